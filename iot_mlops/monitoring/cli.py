"""`iot-mlops feedback`: record feedback about a prediction, list what was received."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Optional

import typer

feedback_app = typer.Typer(help="Feedback on predictions: false positives, outcomes, ratings.", no_args_is_help=True)


def _store():
    from iot_mlops.opstore.feedback import FeedbackStore
    from iot_mlops.settings import get_settings

    return FeedbackStore(get_settings().store)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@feedback_app.command("add")
def feedback_add(
    prediction_id: Annotated[str, typer.Argument(help="The prediction's id (from the predictions table or the API).")],
    feedback_type: Annotated[str, typer.Option("--type", help="false_positive, false_negative, correct or unclear.")],
    rating: Annotated[int, typer.Option(help="1 (useless) to 5 (spot on).")],
    component: Annotated[Optional[str], typer.Option(help="The component that actually failed, if any.")] = None,
    failed_at: Annotated[Optional[str], typer.Option(help="When it failed (ISO 8601; UTC unless an offset is given).")] = None,
    comment: Annotated[Optional[str], typer.Option(help="Free text.")] = None,
    source: Annotated[str, typer.Option(help="technician, app or system.")] = "technician",
) -> None:
    """Record one feedback record; prints its id."""
    from sqlalchemy.exc import SQLAlchemyError

    from iot_mlops.opstore.feedback import FeedbackError

    outcome_at = None
    if failed_at is not None:
        try:
            outcome_at = datetime.fromisoformat(failed_at)
        except ValueError:
            _fail(f"--failed-at {failed_at!r} is not an ISO 8601 time (e.g. 2026-01-15T08:30)")
    data = {"type": feedback_type, "rating": rating, "source": source, "outcome_component": component, "outcome_at": outcome_at,
            "comment": comment}
    try:
        stored = _store().add(prediction_id, data)
    except (FeedbackError, SQLAlchemyError) as error:
        _fail(str(error).splitlines()[0])
    typer.echo(stored)


@feedback_app.command("list")
def feedback_list(
    fleet: Annotated[Optional[str], typer.Option(help="Only this fleet.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="The most recent N records.")] = 20,
) -> None:
    """Recent feedback, oldest first, with the prediction it is about."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        records = _store().list(fleet=fleet, limit=limit)
    except SQLAlchemyError as error:
        _fail(str(error).splitlines()[0])
    if not records:
        typer.echo("no feedback recorded")
        return
    header = ["id", "received (UTC)", "fleet", "device", "alert", "type", "rating", "outcome", "source", "prediction", "comment"]
    rows = [[str(r.id), f"{r.created_at:%Y-%m-%d %H:%M:%S}", r.fleet, r.device_id, r.predicted_component, r.type, str(r.rating),
             f"{r.outcome_component}@{r.outcome_at:%Y-%m-%d %H:%M}" if r.outcome_at else (r.outcome_component or "-"),
             r.source, r.prediction_id, r.comment or ""] for r in records]
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    typer.echo("\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines))
