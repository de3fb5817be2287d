"""The demo's alert story: nightly alerts before the new batch joined and after the retraining it started."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from statistics import mean
from typing import Protocol

WITHIN = 2.0  # after retraining, alerts within this factor of the pre-drift nights


class NightAlerts(Protocol):
    day: date
    alerts: int
    ticks: list


def alert_trend(nights: Sequence[NightAlerts], drift_from: date, gate_verdicts: Callable[[str], list[str]]) -> list[str]:
    """Lines comparing alerts per night after a retraining with the nights before drift, or saying why the gate refused."""
    before = [n.alerts for n in nights if n.day < drift_from]
    retrained = next((i for i, n in enumerate(nights) for t in n.ticks if t.action == "requested" and t.run_success), None)
    if not before:
        return ["Alerts per night: no night before the drift to compare with."]
    baseline = mean(before)
    head = f"Alerts per night: {baseline:.0f} before the new batch joined on {drift_from}"
    if retrained is None:
        return [f"{head}; no retraining ran, so the nights after drift are {[n.alerts for n in nights if n.day >= drift_from]}."]
    run_id = next(t.run_id for t in nights[retrained].ticks if t.action == "requested" and t.run_success)
    verdicts = gate_verdicts(run_id)
    promoted = any(" promoted " in v for v in verdicts)
    after = [n.alerts for n in nights[retrained + 1:]]
    if not after:
        return [f"{head}; the retraining ran on the last night, so no night shows its alerts yet.", *_gate(verdicts)]
    ratio = mean(after) / baseline if baseline else float("inf")
    verdict = f"within {WITHIN:g}x" if ratio <= WITHIN else f"NOT within {WITHIN:g}x"
    who = "the retrained champion" if promoted else "the kept champion"
    return [f"{head}, {mean(after):.0f} after the retraining with {who}: {ratio:.1f}x, {verdict}.", *_gate(verdicts)]


def _gate(verdicts: list[str]) -> list[str]:
    return [f"  gate: {v}" for v in verdicts] or ["  gate: no decision recorded for the retraining run"]
