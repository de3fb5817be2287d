"""The gate's decision, on its own."""

from __future__ import annotations

import pytest

from iot_mlops.registry.gate import GatePolicy, decide

POLICY = GatePolicy(primary_metric="macro_f1", margin=0.01, floor=0.5, recall_tolerance=0.05)
RECALL = {"heating_element": 0.80, "valve": 0.60}


@pytest.mark.parametrize(
    ("challenger", "champion", "challenger_recall", "champion_recall", "promote", "reason"),
    [
        (0.70, None, RECALL, None, True, "first model"),
        (0.40, None, RECALL, None, False, "below floor"),
        (0.60, 0.70, RECALL, RECALL, False, "does not beat champion"),
        (0.705, 0.70, RECALL, RECALL, False, "by margin 0.01"),
        (0.80, 0.70, {"heating_element": 0.85, "valve": 0.65}, RECALL, True, "beats champion"),
        (0.80, 0.70, {"heating_element": 0.90, "valve": 0.50}, RECALL, False, "valve -0.100"),
        (0.80, 0.70, {"heating_element": 0.90}, RECALL, False, "recall drops beyond tolerance"),
    ],
    ids=["first-above-floor", "first-below-floor", "worse", "within-margin", "better", "recall-drop", "component-missing"],
)
def test_decide(challenger, champion, challenger_recall, champion_recall, promote, reason):
    decision = decide(POLICY, {"macro_f1": challenger}, None if champion is None else {"macro_f1": champion},
                      challenger_recall, champion_recall)
    assert decision.promote is promote
    assert reason in decision.reason
    assert (decision.challenger_score, decision.champion_score) == (challenger, champion)
