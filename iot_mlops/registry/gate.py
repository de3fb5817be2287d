"""The champion gate's decision: promote a challenger only when it is truly better."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GatePolicy:
    """Margins of the gate; the primary metric is higher-is-better."""

    primary_metric: str = "macro_f1"
    margin: float = 0.01
    floor: float = 0.5
    recall_tolerance: float = 0.05


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    challenger_score: float
    champion_score: float | None


def decide(
    policy: GatePolicy,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    challenger_recall: dict[str, float],
    champion_recall: dict[str, float] | None,
) -> GateDecision:
    """Compare scores on the same held-out window and say whether the challenger is promoted."""
    score = challenger[policy.primary_metric]
    if champion is None:
        if score >= policy.floor:
            return GateDecision(True, f"first model: {policy.primary_metric} {score:.4f} >= floor {policy.floor}", score, None)
        return GateDecision(False, f"first model below floor: {policy.primary_metric} {score:.4f} < {policy.floor}", score, None)
    best = champion[policy.primary_metric]
    drops = {
        comp: champion_recall[comp] - challenger_recall.get(comp, 0.0)
        for comp in (champion_recall or {})
        if champion_recall[comp] - challenger_recall.get(comp, 0.0) > policy.recall_tolerance
    }
    if drops:
        listed = ", ".join(f"{c} -{d:.3f}" for c, d in sorted(drops.items()))
        return GateDecision(False, f"recall drops beyond tolerance {policy.recall_tolerance}: {listed}", score, best)
    if score < best + policy.margin:
        return GateDecision(
            False, f"{policy.primary_metric} {score:.4f} does not beat champion {best:.4f} by margin {policy.margin}", score, best
        )
    if score < policy.floor:
        return GateDecision(False, f"{policy.primary_metric} {score:.4f} below floor {policy.floor}", score, best)
    return GateDecision(True, f"{policy.primary_metric} {score:.4f} beats champion {best:.4f} by >= {policy.margin}", score, best)
