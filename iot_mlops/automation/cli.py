"""`iot-mlops decisions`: read the decision log; who runs `iot-mlops retrain`."""

from __future__ import annotations

import getpass
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


def default_actor() -> str:
    """`cli:<login name>`, from the environment or else the password database."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"

