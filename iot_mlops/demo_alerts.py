"""The demo's alert story: nightly alerts before the new batch joined and after the retraining it started."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from statistics import mean
from typing import Protocol

WITHIN = 2.0  # after retraining, false alerts (or alerts, where truth is unknown) within this factor of the pre-drift nights


class NightAlerts(Protocol):
    day: date
    alerts: int
    ticks: list
    false_alerts: int | None


def alert_trend(nights: Sequence[NightAlerts], drift_from: date, gate_verdicts: Callable[[str], list[str]]) -> list[str]:
    """Lines comparing alerts per night after a retraining with the nights before drift, and the gate's verdict.

    Alerts before a real failure are the model doing its job, so where the simulator's truth is known the false
    alerts are what is judged.
    """
    before = [n for n in nights if n.day < drift_from]
    retrained = next((i for i, n in enumerate(nights) for t in n.ticks if t.action == "requested" and t.run_success), None)
    if not before:
        return ["Alerts per night: no night before the drift to compare with."]
    head = f"Alerts per night before the new batch joined on {drift_from}: {_figures(before)}"
    if retrained is None:
        return [f"{head}; no retraining ran; after it: {_figures([n for n in nights if n.day >= drift_from])}."]
    run_id = next(t.run_id for t in nights[retrained].ticks if t.action == "requested" and t.run_success)
    verdicts = gate_verdicts(run_id)
    after = list(nights[retrained + 1:])
    if not after:
        return [f"{head}; the retraining ran on the last night, so no night shows its alerts yet.", *_gate(verdicts)]
    judged = "false alerts" if all(n.false_alerts is not None for n in before + after) else "alerts"
    count = (lambda n: n.false_alerts) if judged == "false alerts" else (lambda n: n.alerts)  # noqa: E731
    baseline, now = mean(map(count, before)), mean(map(count, after))
    ratio = now / baseline if baseline else (0.0 if not now else float("inf"))
    verdict = f"within {WITHIN:g}x" if ratio <= WITHIN else f"NOT within {WITHIN:g}x"
    who = "the retrained champion" if any(" promoted " in v for v in verdicts) else "the kept champion"
    return [head, f"  after the retraining, with {who}: {_figures(after)}; {judged} {ratio:.1f}x the nights before drift, "
                  f"{verdict}.", *_gate(verdicts)]


def _figures(nights: Sequence[NightAlerts]) -> str:
    known = all(n.false_alerts is not None for n in nights)
    return ", ".join(f"{n.alerts}" + (f" ({n.false_alerts} false)" if known else "") for n in nights)


def _gate(verdicts: list[str]) -> list[str]:
    return [f"  gate: {v}" for v in verdicts] or ["  gate: no decision recorded for the retraining run"]
