"""`iot-mlops decisions` and `iot-mlops retrain`: read the decision log, retrain by hand with a reason."""

from __future__ import annotations

import getpass
import os
import time
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


def default_actor() -> str:
    """`cli:<login name>`, from the environment or else the password database."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def retrain(
    fleet: Annotated[str, typer.Option(help="Fleet to retrain.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the decision log and on the run.")],
    actor: Annotated[Optional[str], typer.Option(help="Who; default cli:<login name>.")] = None,
) -> None:
    """Retrain a fleet's failure model now and gate it: the manual retraining job, logged with its reason."""
    import dagster as dg

    from iot_mlops.automation.retraining import gate_verdicts, manual_retraining
    from iot_mlops.definitions import build_definitions

    if not reason.strip():
        typer.echo("error: give a reason for the retraining", err=True)
        raise typer.Exit(2)
    started = time.monotonic()

    def progress(step: str, event: str, seconds: float) -> None:
        label = {"STEP_START": "started", "STEP_SUCCESS": f"done in {seconds:.0f}s", "STEP_FAILURE": f"FAILED after {seconds:.0f}s"}
        typer.echo(f"[{time.monotonic() - started:4.0f}s] {step.split('__', 1)[-1]}: {label.get(event, event)}")

    with _clean_errors():
        defs, instance = build_definitions(), dg.DagsterInstance.get()
        fleets = sorted(j.name.removesuffix("_retraining") for j in defs.resolve_all_job_defs() if j.name.endswith("_retraining"))
        if fleet not in fleets:
            typer.echo(f"error: no fleet {fleet!r}; fleets: {', '.join(fleets)}", err=True)
            raise typer.Exit(2)
        typer.echo(f"{fleet}: retraining (dataset, models, gate) on the instance at {instance.root_directory}")
        result = manual_retraining(defs, fleet, reason, actor or default_actor(), instance, on_event=progress)
        verdicts = gate_verdicts(_decision_log(), result.run_id)
    status = "succeeded" if result.success else "failed"
    typer.echo(f"{fleet}: retraining run {result.run_id} {status} in {time.monotonic() - started:.0f}s")
    for line in verdicts:
        typer.echo(f"gate: {line}")
    if not result.success:
        raise typer.Exit(1)
