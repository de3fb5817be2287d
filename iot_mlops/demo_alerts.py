"""The demo's alert story: alarms per night before the new batch joined and after the retraining it started."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Protocol

WITHIN = 2.0  # after retraining, false alarms per device within this factor of the nights before drift

PER = 100  # devices: rates are per this many, as the fleet grows when the new batch joins


class NightAlerts(Protocol):
    day: date
    alerts: int
    ticks: list
    alarms: int  # alerted devices and components: the technician visits the night asks for
    false_alarms: int | None  # alarms where no fault was found (None: the truth is not known)
    devices: int


def alert_trend(nights: Sequence[NightAlerts], drift_from: date, gate_verdicts: Callable[[str], list[str]],
                held_out: Sequence[NightAlerts] = ()) -> list[str]:
    """Lines comparing false alarms per device after a retraining with the nights before drift, and the gate's verdict.

    `held_out` are days before the replay scored by the same champion, which did not train on them: with the replayed
    nights before drift they make the pre-drift level, so a level is not read off a single night's handful of alarms.
    Alarms before a real failure are the model doing its job, so where the truth is known the false ones are judged.
    """
    before = [*held_out, *(n for n in nights if n.day < drift_from)]
    retrained = next((i for i, n in enumerate(nights) for t in n.ticks if t.action == "requested" and t.run_success), None)
    if not before:
        return ["Alarms per night: no night before the drift to compare with."]
    head = f"Alarms per night before the new batch joined on {drift_from}: {_figures(before)}"
    if retrained is None:
        return [f"{head}; no retraining ran; after it: {_figures([n for n in nights if n.day >= drift_from])}."]
    run_id = next(t.run_id for t in nights[retrained].ticks if t.action == "requested" and t.run_success)
    verdicts = gate_verdicts(run_id)
    after = list(nights[retrained + 1:])
    if not after:
        return [f"{head}; the retraining ran on the last night, so no night shows its alarms yet.", *_gate(verdicts)]
    judged = "false alarms" if all(n.false_alarms is not None for n in before + after) else "alarms"
    baseline, now = _rate(before, judged), _rate(after, judged)
    ratio = now / baseline if baseline else (0.0 if not now else float("inf"))
    verdict = f"within {WITHIN:g}x" if ratio <= WITHIN else f"NOT within {WITHIN:g}x"
    who = "the retrained champion" if any(" promoted " in v for v in verdicts) else "the kept champion"
    return [head,
            f"  after the retraining, with {who}: {_figures(after)}",
            f"  {judged} per {PER} devices a night: {baseline:.2f} before drift, {now:.2f} after the retraining: "
            + (f"{ratio:.1f}x, {verdict}." if baseline else f"none before, {verdict}."),
            *_gate(verdicts)]


def _rate(nights: Sequence[NightAlerts], judged: str) -> float:
    count = sum(n.false_alarms if judged == "false alarms" else n.alarms for n in nights)
    return PER * count / max(sum(n.devices for n in nights), 1)


def _figures(nights: Sequence[NightAlerts]) -> str:
    known = all(n.false_alarms is not None for n in nights)
    return ", ".join(f"{n.alarms}" + (f" ({n.false_alarms} false)" if known else "") for n in nights)


def _gate(verdicts: list[str]) -> list[str]:
    return [f"  gate: {v}" for v in verdicts] or ["  gate: no decision recorded for the retraining run"]
