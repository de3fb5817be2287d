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
    alarms: int
    ticks: list = field(default_factory=list)
    false_alarms: int | None = None
    devices: int = 100
    alerts: int = 0


RETRAIN = Tick("water_heaters_drift_sensor", "requested", "drift share above 0.3 twice", run_id="abc12345", run_success=True)


def verdicts(decision: str):
    return lambda run_id: [f"water_heaters_failure v2 {decision} (v1 ...): reason"] if run_id == "abc12345" else []


def test_alarms_back_within_twice_the_pre_drift_level_after_a_promotion():
    nights = [N(date(2026, 3, 9), 10), N(DRIFT, 90), N(date(2026, 3, 11), 95, [RETRAIN]), N(date(2026, 3, 12), 15)]
    head, after, rate, gate = alert_trend(nights, DRIFT, verdicts("promoted"))
    assert head.endswith(": 10") and "with the retrained champion: 15" in after
    assert "alarms per 100 devices a night: 10.00 before drift, 15.00 after the retraining: 1.5x, within 2x" in rate
    assert "promoted" in gate


def test_alarms_still_high_are_said_with_the_gate_refusal():
    nights = [N(date(2026, 3, 9), 10), N(DRIFT, 90), N(date(2026, 3, 11), 95, [RETRAIN]), N(date(2026, 3, 12), 90)]
    _, after, rate, gate = alert_trend(nights, DRIFT, verdicts("rejected"))
    assert "kept champion" in after and "9.0x, NOT within 2x" in rate and "rejected" in gate


def test_with_the_truth_known_false_alarms_per_device_are_judged_over_held_out_days_too():
    """A fleet grown by half raises more alarms; per device, and over more than one night before drift, it does not."""
    held_out = [N(date(2026, 3, d), 2, false_alarms=f, devices=250) for d, f in ((6, 1), (7, 0), (8, 1))]
    nights = [N(date(2026, 3, 9), 1, false_alarms=0, devices=250), N(DRIFT, 0, false_alarms=0, devices=375),
              N(date(2026, 3, 11), 4, [RETRAIN], false_alarms=1, devices=375),
              N(date(2026, 3, 12), 9, false_alarms=2, devices=375), N(date(2026, 3, 13), 3, false_alarms=0, devices=375)]
    head, after, rate, _ = alert_trend(nights, DRIFT, verdicts("rejected"), held_out)
    assert head.endswith("2 (1 false), 2 (0 false), 2 (1 false), 1 (0 false)") and after.endswith("9 (2 false), 3 (0 false)")
    # 2 false of 1,000 device-nights before, 2 of 750 after: 0.20 and 0.27 per 100 devices.
    assert "false alarms per 100 devices a night: 0.20 before drift, 0.27 after the retraining: 1.3x, within 2x" in rate
    [lonely] = alert_trend(nights[:1] + [N(DRIFT, 3, false_alarms=3, devices=375)], DRIFT, verdicts("rejected"))
    assert "no retraining ran" in lonely


def test_a_clean_pre_drift_level_makes_any_false_alarm_after_it_too_many():
    nights = [N(date(2026, 3, 9), 1, false_alarms=0), N(DRIFT, 0, false_alarms=0),
              N(date(2026, 3, 11), 1, [RETRAIN], false_alarms=0), N(date(2026, 3, 12), 2, false_alarms=1)]
    _, _, rate, _ = alert_trend(nights, DRIFT, verdicts("rejected"))
    assert "0.00 before drift, 1.00 after the retraining: none before, NOT within 2x" in rate


def test_without_retraining_the_nights_after_drift_are_listed():
    [line] = alert_trend([N(date(2026, 3, 9), 10), N(DRIFT, 12)], DRIFT, verdicts("promoted"))
    assert "no retraining ran" in line and "after it: 12" in line
