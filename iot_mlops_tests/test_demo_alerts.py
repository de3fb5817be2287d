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


RETRAIN = Tick("water_heaters_drift_sensor", "requested", "drift share above 0.3 twice", run_id="abc12345", run_success=True)


def verdicts(decision: str):
    return lambda run_id: [f"water_heaters_failure v2 {decision} (v1 ...): reason"] if run_id == "abc12345" else []


def test_alerts_back_within_twice_the_pre_drift_level_after_a_promotion():
    nights = [N(date(2026, 3, 9), 100), N(DRIFT, 900), N(date(2026, 3, 11), 950, [RETRAIN]), N(date(2026, 3, 12), 150)]
    first, gate = alert_trend(nights, DRIFT, verdicts("promoted"))
    assert "100 before the new batch" in first and "150 after the retraining with the retrained champion: 1.5x, within 2x" in first
    assert "promoted" in gate


def test_alerts_still_high_are_said_with_the_gate_refusal():
    nights = [N(date(2026, 3, 9), 100), N(DRIFT, 900), N(date(2026, 3, 11), 950, [RETRAIN]), N(date(2026, 3, 12), 900)]
    first, gate = alert_trend(nights, DRIFT, verdicts("rejected"))
    assert "NOT within 2x" in first and "kept champion" in first and "rejected" in gate


def test_without_retraining_the_nights_after_drift_are_listed():
    [line] = alert_trend([N(date(2026, 3, 9), 100), N(DRIFT, 120)], DRIFT, verdicts("promoted"))
    assert "no retraining ran" in line and "[120]" in line
