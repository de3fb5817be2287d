"""Retraining policy: hysteresis, consecutive days, cooldown, daily cap, minimum new data, once per condition."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from iot_mlops.automation.policy import (
    Condition,
    consecutive_days,
    decide,
    drift_condition,
    feedback_condition,
    performance_condition,
    quality_condition,
)
from iot_mlops.opstore.decisions import Decision
from iot_mlops.profiles.monitoring import RetrainingPolicy

POLICY = RetrainingPolicy(drift_share_high=0.3, drift_share_low=0.1, drift_consecutive_days=2, cooldown="24h",
                          max_per_day=2, min_new_days=1, quality_error_days=2, min_feedback=5, false_positive_rate=0.5,
                          recall_floor=0.5, min_matured_failures=3)
D0 = date(2026, 3, 1)
NOW = datetime(2026, 3, 10, 12, 0)


def days(shares: list[float]) -> list[tuple[date, float]]:
    return [(D0 + timedelta(days=i), s) for i, s in enumerate(shares)]


def trigger(at: datetime, run_key: str = "drift_sensor:drift:x") -> Decision:
    return Decision(1, at, "f", "m", "retrain_triggered", None, None, "r", "drift_sensor", None, {"run_key": run_key})


FIRED = Condition("drift_sensor", True, "drift", key="drift:2026-03-02")


def test_drift_needs_k_consecutive_days_at_or_above_high():
    assert not drift_condition(days([0.0, 0.5]), POLICY, None).fired  # one day high
    assert not drift_condition(days([0.5, 0.2, 0.5]), POLICY, None).fired  # interrupted
    fired = drift_condition(days([0.0, 0.3, 0.6]), POLICY, None)
    assert fired.fired and fired.key == f"drift:{D0 + timedelta(days=1)}"
    assert fired.figures["consecutive_days"] == 2


def test_drift_streak_counts_calendar_days_not_reports():
    history = [(D0, 0.6), (D0 + timedelta(days=2), 0.6)]  # a missing day in between
    assert not drift_condition(history, POLICY, None).fired


def test_hysteresis_rearms_only_below_low_threshold():
    fired_on = D0 + timedelta(days=1)
    # still high after firing: disarmed
    assert not drift_condition(days([0.5, 0.5, 0.5, 0.5]), POLICY, fired_on).fired
    # fell between low and high, then high again: still disarmed
    assert not drift_condition(days([0.5, 0.5, 0.2, 0.5, 0.5]), POLICY, fired_on).fired
    # fell below low, then high on K days again: re-armed and fires with a new key
    again = drift_condition(days([0.5, 0.5, 0.05, 0.5, 0.5]), POLICY, fired_on)
    assert again.fired and again.key == f"drift:{D0 + timedelta(days=3)}"


def test_a_seasonal_signal_beyond_the_reference_counts_as_a_high_drift_day():
    history = days([0.05, 0.05, 0.05, 0.05])
    beyond = {D0 + timedelta(days=2): ["inlet_temp_c"], D0 + timedelta(days=3): ["inlet_temp_c"]}
    assert not drift_condition(history[:3], POLICY, None, beyond).fired  # one day beyond
    fired = drift_condition(history, POLICY, None, beyond)
    assert fired.fired and fired.key == f"drift:{D0 + timedelta(days=2)}" and "inlet_temp_c" in fired.reason
    assert fired.figures["seasonal_beyond_reference"] == ["inlet_temp_c"]
    # a low share does not re-arm while the seasonal signal is still beyond the reference
    assert not drift_condition(history, POLICY, D0 + timedelta(days=3), beyond).fired
    assert not drift_condition(history, POLICY, None, {D0: ["inlet_temp_c"], D0 + timedelta(days=2): ["inlet_temp_c"]}).fired


def test_consecutive_days():
    assert consecutive_days([D0, D0 + timedelta(days=1), D0 + timedelta(days=3), D0 + timedelta(days=4)]) == [
        D0 + timedelta(days=3), D0 + timedelta(days=4)]


def test_cooldown_daily_cap_and_minimum_data():
    assert decide(FIRED, POLICY, now=NOW, triggers=[], running=0, new_days=3).action == "trigger"
    cooling = decide(FIRED, POLICY, now=NOW, triggers=[trigger(NOW - timedelta(hours=2))], running=0, new_days=3)
    assert cooling.action == "skip" and "cooldown" in cooling.reason
    after = decide(FIRED, POLICY, now=NOW, triggers=[trigger(NOW - timedelta(hours=25))], running=0, new_days=3)
    assert after.action == "trigger"
    no_cooldown = POLICY.model_copy(update={"cooldown": timedelta(minutes=1)})
    capped = decide(FIRED, no_cooldown, now=NOW, triggers=[trigger(NOW - timedelta(hours=3)), trigger(NOW - timedelta(hours=2))],
                    running=0, new_days=3)
    assert capped.action == "skip" and "max 2" in capped.reason
    starved = decide(FIRED, POLICY, now=NOW, triggers=[], running=0, new_days=0)
    assert starved.action == "skip" and "new feature days" in starved.reason
    busy = decide(FIRED, POLICY, now=NOW, triggers=[], running=1, new_days=3)
    assert busy.action == "skip" and "already queued or running" in busy.reason


def test_one_condition_starts_one_run_even_after_cooldown():
    old = trigger(NOW - timedelta(days=5), run_key=f"drift_sensor:{FIRED.key}")
    verdict = decide(FIRED, POLICY, now=NOW, triggers=[old], running=0, new_days=3)
    assert verdict.action == "skip" and "already started a run" in verdict.reason
    assert decide(FIRED, POLICY, now=NOW, triggers=[], running=0, new_days=3).run_key == f"drift_sensor:{FIRED.key}"


def test_unfired_condition_decides_nothing():
    verdict = decide(Condition("drift_sensor", False, "calm"), POLICY, now=NOW, triggers=[], running=0, new_days=3)
    assert verdict.action == "none" and verdict.run_key is None


@pytest.mark.parametrize(("count", "rate", "fired"), [(4, 0.9, False), (5, 0.5, False), (5, 0.6, True), (9, None, False)])
def test_feedback_condition(count, rate, fired):
    condition = feedback_condition(count, rate, POLICY, "3")
    assert condition.fired is fired
    assert (condition.key == "feedback:v3") is fired


def test_performance_condition_needs_matured_failures():
    assert not performance_condition(D0, 0.1, 2, POLICY, "1").fired
    assert not performance_condition(D0, 0.6, 10, POLICY, "1").fired
    assert performance_condition(D0, 0.4, 10, POLICY, "1").fired


def test_quality_condition_needs_consecutive_error_days():
    ok, err = "OK", "ERROR"
    history = lambda sev: [(D0 + timedelta(days=i), s) for i, s in enumerate(sev)]  # noqa: E731
    assert not quality_condition(history([err, "WARN", err]), POLICY).fired
    assert quality_condition(history([ok, err, err]), POLICY).fired
    assert not quality_condition(history([err, err, ok]), POLICY).fired


def test_policy_refuses_low_above_high():
    with pytest.raises(ValueError, match="drift_share_low"):
        RetrainingPolicy(drift_share_high=0.2, drift_share_low=0.3)
