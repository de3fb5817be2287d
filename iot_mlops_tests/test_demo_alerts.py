"""The demo's alert story, on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from iot_mlops.automation.replay import Tick
from iot_mlops.demo_alerts import alert_trend

DRIFT = date(2026, 3, 10)


@dataclass
class N:
    day: date
    alerts: int
    ticks: list = field(default_factory=list)
    false_alerts: int | None = None


RETRAIN = Tick("water_heaters_drift_sensor", "requested", "drift share above 0.3 twice", run_id="abc12345", run_success=True)


def verdicts(decision: str):
    return lambda run_id: [f"water_heaters_failure v2 {decision} (v1 ...): reason"] if run_id == "abc12345" else []


def test_alerts_back_within_twice_the_pre_drift_level_after_a_promotion():
    nights = [N(date(2026, 3, 9), 100), N(DRIFT, 900), N(date(2026, 3, 11), 950, [RETRAIN]), N(date(2026, 3, 12), 150)]
    head, after, gate = alert_trend(nights, DRIFT, verdicts("promoted"))
    assert head.endswith(": 100") and "with the retrained champion: 150; alerts 1.5x the nights before drift, within 2x" in after
    assert "promoted" in gate


def test_alerts_still_high_are_said_with_the_gate_refusal():
    nights = [N(date(2026, 3, 9), 100), N(DRIFT, 900), N(date(2026, 3, 11), 950, [RETRAIN]), N(date(2026, 3, 12), 900)]
    _, after, gate = alert_trend(nights, DRIFT, verdicts("rejected"))
    assert "NOT within 2x" in after and "kept champion" in after and "rejected" in gate


def test_with_the_truth_known_false_alerts_are_judged():
    """Many alerts before real failures are no flood: 97 alerts, 23 of them false, against 24 with 12 false."""
    nights = [N(date(2026, 3, 9), 24, false_alerts=12), N(DRIFT, 0, false_alerts=0),
              N(date(2026, 3, 11), 28, [RETRAIN], false_alerts=9), N(date(2026, 3, 12), 97, false_alerts=23)]
    head, after, _ = alert_trend(nights, DRIFT, verdicts("rejected"))
    assert head.endswith("24 (12 false)") and "97 (23 false); false alerts 1.9x the nights before drift, within 2x" in after


def test_without_retraining_the_nights_after_drift_are_listed():
    [line] = alert_trend([N(date(2026, 3, 9), 100), N(DRIFT, 120)], DRIFT, verdicts("promoted"))
    assert "no retraining ran" in line and "after it: 120" in line
