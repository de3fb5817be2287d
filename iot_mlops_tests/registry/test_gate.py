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


BUDGET = GatePolicy(primary_metric="macro_f1", margin=0.01, floor=0.5, recall_tolerance=0.05, max_false_alarms=1.0)


def scores(f1: float, false_alarms: float, event_recall: float = 0.8) -> dict[str, float]:
    return {"macro_f1": f1, "false_alarms_per_device_month": false_alarms, "event_recall": event_recall,
            "mean_lead_time_h": 12.0}


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        (scores(0.8, 3.0), None, False, "above the fleet's limit 1.0"),
        (scores(0.8, 0.4), None, True, "first model"),
        (scores(0.9, 2.5), scores(0.7, 0.5), False, "raises 2.50 false alarms per device-month, above the fleet's limit"),
        (scores(0.9, 0.5, event_recall=0.5), scores(0.7, 0.5, event_recall=0.8), False, "event recall 0.50 drops"),
        (scores(0.695, 0.6), scores(0.70, 4.0), True, "cuts false alarms per device-month from 4.00"),
        (scores(0.60, 0.6), scores(0.70, 4.0), False, "does not beat champion"),
        (scores(0.72, 2.0), scores(0.70, 4.0), True, "cuts false alarms per device-month from 4.00 (above the limit 1.0) to 2.00"),
        (scores(0.75, 0.5, event_recall=float("nan")), scores(0.70, 0.5), True, "beats champion"),
    ],
    ids=["first-over-budget", "first-within", "raises-alarms", "event-recall-drop", "cuts-excess-within-margin",
         "cuts-excess-but-far-worse", "cuts-excess-still-over", "no-failures-in-window"],
)
def test_decide_judges_alerts_an_operator_feels(challenger, champion, promote, reason):
    decision = decide(BUDGET, challenger, champion, RECALL, None if champion is None else RECALL)
    assert decision.promote is promote
    assert reason in decision.reason


def test_without_a_budget_false_alarms_are_reported_not_judged():
    decision = decide(POLICY, scores(0.8, 9.0), scores(0.7, 0.1), RECALL, RECALL)
    assert decision.promote and "false alarms per device month 9.00" in decision.reason
