"""The champion gate's decision: promote a challenger only when it is truly better for the operator."""

from __future__ import annotations

import math
from dataclasses import dataclass

FALSE_ALARMS = "false_alarms_per_device_month"
EVENT_RECALL = "event_recall"


@dataclass(frozen=True)
class GatePolicy:
    """Margins of the gate; the primary metric is higher-is-better.

    `max_false_alarms` (per device-month) is the fleet's alert budget: no model that would exceed it is promoted
    unless it cuts the champion's own excess; None leaves alerts unjudged (models without alerts).
    """

    primary_metric: str = "macro_f1"
    margin: float = 0.01
    floor: float = 0.5
    recall_tolerance: float = 0.05
    max_false_alarms: float | None = None
    event_recall_tolerance: float = 0.05


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    challenger_score: float
    champion_score: float | None


def _known(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _alerts(scores: dict[str, float]) -> str:
    parts = [f"{FALSE_ALARMS.replace('_', ' ')} {scores[FALSE_ALARMS]:.2f}" if _known(scores.get(FALSE_ALARMS)) else ""]
    if _known(scores.get(EVENT_RECALL)):
        lead = scores.get("mean_lead_time_h")
        parts.append(f"event recall {scores[EVENT_RECALL]:.2f}" + (f" (mean lead {lead:.1f} h)" if _known(lead) else ""))
    return ", ".join(p for p in parts if p)


def decide(
    policy: GatePolicy,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    challenger_recall: dict[str, float],
    champion_recall: dict[str, float] | None,
) -> GateDecision:
    """Compare scores on the same held-out window and say whether the challenger is promoted."""
    score, name, limit = challenger[policy.primary_metric], policy.primary_metric, policy.max_false_alarms
    alarms = challenger.get(FALSE_ALARMS)
    over_budget = limit is not None and _known(alarms) and alarms > limit
    said = _alerts(challenger)
    said = f"; {said}" if said else ""
    if champion is None:
        if score < policy.floor:
            return GateDecision(False, f"first model below floor: {name} {score:.4f} < {policy.floor}{said}", score, None)
        if over_budget:
            return GateDecision(False, f"first model raises {alarms:.2f} false alarms per device-month, above the "
                                       f"fleet's limit {limit}{said}", score, None)
        return GateDecision(True, f"first model: {name} {score:.4f} >= floor {policy.floor}{said}", score, None)
    best = champion[policy.primary_metric]
    if score < policy.floor:
        return GateDecision(False, f"{name} {score:.4f} below floor {policy.floor}{said}", score, best)
    drops = {
        comp: champion_recall[comp] - challenger_recall.get(comp, 0.0)
        for comp in (champion_recall or {})
        if champion_recall[comp] - challenger_recall.get(comp, 0.0) > policy.recall_tolerance
    }
    if drops:
        listed = ", ".join(f"{c} -{d:.3f}" for c, d in sorted(drops.items()))
        return GateDecision(False, f"recall drops beyond tolerance {policy.recall_tolerance}: {listed}", score, best)
    events, champion_events = challenger.get(EVENT_RECALL), champion.get(EVENT_RECALL)
    if _known(events) and _known(champion_events) and events < champion_events - policy.event_recall_tolerance:
        return GateDecision(False, f"event recall {events:.2f} drops below the champion's {champion_events:.2f} by more "
                                   f"than {policy.event_recall_tolerance}{said}", score, best)
    champion_alarms = champion.get(FALSE_ALARMS)
    if over_budget and not (_known(champion_alarms) and alarms < champion_alarms):
        return GateDecision(False, f"raises {alarms:.2f} false alarms per device-month, above the fleet's limit "
                                   f"{limit} (champion {champion_alarms:.2f}){said}", score, best)
    champion_over = limit is not None and _known(champion_alarms) and champion_alarms > limit
    if champion_over and _known(alarms) and alarms < champion_alarms and score >= best - policy.margin:
        # An operator feels the false alarms first: cutting the champion's excess is worth a score within the margin.
        return GateDecision(True, f"cuts false alarms per device-month from {champion_alarms:.2f} (above the limit "
                                  f"{limit}) to {alarms:.2f}, {name} {score:.4f} vs {best:.4f}{said}", score, best)
    if score < best + policy.margin:
        return GateDecision(False, f"{name} {score:.4f} does not beat champion {best:.4f} by margin {policy.margin}{said}",
                            score, best)
    return GateDecision(True, f"{name} {score:.4f} beats champion {best:.4f} by >= {policy.margin}{said}", score, best)
