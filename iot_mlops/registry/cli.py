"""`iot-mlops models`: list registered models, show their decision history, roll a champion back."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer

models_app = typer.Typer(help="Registered models: aliases, decision history, rollback.", no_args_is_help=True)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Expected failures (missing model, no earlier version, store unreachable) end as one line on stderr."""
    try:
        yield
    except Exception as error:
        if not isinstance(error, _expected_errors()):
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The error classes of what the command loaded: a class never imported cannot have been raised, and
    importing MLflow to name its error would cost a command such as `decisions` seconds."""
    expected: list[type[BaseException]] = [OSError]
    for module, name in (("sqlalchemy.exc", "SQLAlchemyError"), ("mlflow.exceptions", "MlflowException"),
                         ("iot_mlops.registry.lifecycle", "RollbackError"), ("iot_mlops.registry.mlflow_service", "ModelNotFound")):
        if module in sys.modules:
            expected.append(getattr(sys.modules[module], name))
    return tuple(expected)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _decision_log():
    from iot_mlops.opstore.decisions import DecisionLog
    from iot_mlops.settings import get_settings, psycopg2_url

    return DecisionLog(psycopg2_url(get_settings().store))


@models_app.command("list")
def models_list() -> None:
    """Registered models with their champion, challenger and latest version."""
    from iot_mlops.registry.mlflow_service import ModelRegistry

    with _clean_errors():
        models = ModelRegistry.from_settings().list_models()
    if not models:
        typer.echo("no registered models")
        return
    rows = [[m.name, m.champion or "-", m.challenger or "-", m.latest_version or "-", str(m.versions)] for m in models]
    typer.echo(_table(["model", "champion", "challenger", "latest", "versions"], rows))


@models_app.command("history")
def models_history(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Every decision about a model: alias moves and retraining triggers, when, why and by whom."""
    from iot_mlops.registry.lifecycle import history

    with _clean_errors():
        decisions = history(_decision_log(), name)
    if not decisions:
        typer.echo(f"no decisions recorded for {name}")
        return
    rows = [[f"{d.created_at:%Y-%m-%d %H:%M:%S}", d.fleet, d.action, d.from_version or "-", d.to_version or "-",
             d.actor, d.reason] for d in decisions]
    typer.echo(_table(["when (UTC)", "fleet", "action", "from", "to", "actor", "reason"], rows))


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the decision log.")] = "manual rollback",
    actor: Annotated[Optional[str], typer.Option(help="Who; default cli:$USER.")] = None,
    fleet: Annotated[Optional[str], typer.Option(help="Fleet for the log (default: the champion's fleet tag).")] = None,
) -> None:
    """Move `champion` back to the newest earlier version that passed its gate."""
    from iot_mlops.registry.lifecycle import rollback
    from iot_mlops.registry.mlflow_service import ModelRegistry

    with _clean_errors():
        decision = rollback(ModelRegistry.from_settings(), _decision_log(), name=name, fleet=fleet, reason=reason,
                            actor=actor or f"cli:{os.environ.get('USER', 'unknown')}")
    moved = f"champion v{decision.from_version} -> v{decision.to_version}"
    typer.echo(f"{name}: {moved} (decision {decision.id}, by {decision.actor})")
