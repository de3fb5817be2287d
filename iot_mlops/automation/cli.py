"""`iot-mlops decisions` and `iot-mlops retrain`: read the decision log, retrain by hand with a reason."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from iot_mlops.registry.cli import _clean_errors, _decision_log, _table


def format_decisions(decisions: list) -> str:
    """The decision log as a table; a gate's row names the decision that started its run."""
    rows = []
    for d in decisions:
        details = d.details or {}
        link = f"after #{details['trigger_decision_id']}" if details.get("trigger_decision_id") else ""
        run = (d.run_id or "")[:8]
        moved = f"{d.from_version or '-'} -> {d.to_version or '-'}" if d.from_version or d.to_version else ""
        rows.append([f"#{d.id}", f"{d.created_at:%Y-%m-%d %H:%M:%S}", d.fleet, d.action, d.model_name or "", moved,
                     d.actor, " ".join(x for x in (run, link) if x), d.reason])
    return _table(["id", "when (UTC)", "fleet", "action", "model", "version", "actor", "run", "reason"], rows)


def decisions(
    fleet: Annotated[Optional[str], typer.Option(help="Only this fleet.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the last N decisions.")] = None,
) -> None:
    """Print the decision log: retraining triggers and skips, gate decisions and rollbacks, with reasons."""
    with _clean_errors():
        rows = _decision_log().list(fleet=fleet, limit=limit)
    typer.echo(format_decisions(rows) if rows else "no decisions recorded yet")


def retrain(
    fleet: Annotated[str, typer.Option(help="Fleet to retrain.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the decision log and on the run.")],
    actor: Annotated[Optional[str], typer.Option(help="Who; default cli:$USER.")] = None,
) -> None:
    """Retrain a fleet's failure model now and gate it: the manual retraining job, logged with its reason."""
    from iot_mlops.automation.retraining import manual_retraining

    if not reason.strip():
        typer.echo("error: give a reason for the retraining", err=True)
        raise typer.Exit(2)
    with _clean_errors():
        decision_id, result = manual_retraining(fleet, reason, actor or f"cli:{os.environ.get('USER', 'unknown')}")
    status = "succeeded" if result.success else "failed"
    typer.echo(f"{fleet}: retraining run {result.run_id} {status} (decision #{decision_id})")
    if not result.success:
        raise typer.Exit(1)
