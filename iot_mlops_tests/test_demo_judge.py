"""The demo's judgement of alarms against the simulator's truth: what a technician sent on them would find."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from iot_mlops.demo_feedback import judge_alarms

T = pd.Timestamp("2026-03-10 00:00")
H = timedelta(hours=24)


def alerts(*rows: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame([(d, T + pd.Timedelta(hours=h), c) for d, c, h in rows], columns=["device_id", "ts", "predicted_component"])


def schedule(*rows: tuple[str, str, float, float, float, bool]) -> pd.DataFrame:
    """device, component, build-up start, failure, end (hours from T), averted."""
    return pd.DataFrame([(d, c, T + pd.Timedelta(hours=b), T + pd.Timedelta(hours=f), T + pd.Timedelta(hours=e), a)
                         for d, c, b, f, e, a in rows],
                        columns=["device_id", "component", "buildup_start", "failure_time", "end_time", "averted"])


def verdicts(judged: pd.DataFrame) -> dict[tuple[str, str], bool]:
    return {(r.device_id, r.predicted_component): bool(r.false) for r in judged.itertuples()}


def test_an_early_catch_during_the_build_up_is_no_false_alarm_but_a_healthy_component_is():
    truth = schedule(("A", "tank", 0, 60, 64, False), ("B", "seal", 10, 40, 44, False))
    judged = judge_alarms(alerts(("A", "tank", 5), ("A", "tank", 6), ("B", "seal", 5), ("C", "seal", 5), ("A", "seal", 5)), truth, H)
    # A's tank wears from hour 0 (fails at 60, 55 h after the alert); B's seal starts wearing only at hour 10, and
    # the alert at 5 is more than the horizon before its failure at 40; C has no fault; A's seal is healthy.
    assert verdicts(judged) == {("A", "tank"): False, ("B", "seal"): True, ("C", "seal"): True, ("A", "seal"): True}


def test_the_horizon_before_a_failure_counts_even_before_a_late_build_up_and_a_down_device_is_a_found_fault():
    truth = schedule(("A", "tank", 30, 40, 44, False), ("B", "seal", 0, 10, 20, False))
    judged = judge_alarms(alerts(("A", "tank", 20), ("B", "thermostat", 12), ("B", "thermostat", 25)), truth, H)
    assert verdicts(judged) == {("A", "tank"): False, ("B", "thermostat"): False}
    assert verdicts(judge_alarms(alerts(("B", "thermostat", 25)), truth, H)) == {("B", "thermostat"): True}


def test_an_averted_failure_wears_until_its_maintenance_only():
    truth = schedule(("A", "tank", 0, 100, 30, True))
    assert verdicts(judge_alarms(alerts(("A", "tank", 20)), truth, H)) == {("A", "tank"): False}
    # After the maintenance the component is as new, and a device whose failure was averted was never down.
    assert verdicts(judge_alarms(alerts(("A", "tank", 31), ("A", "seal", 101)), truth, H)) == {("A", "tank"): True, ("A", "seal"): True}


def test_no_alerts_no_alarms():
    judged = judge_alarms(alerts(), schedule(("A", "tank", 0, 60, 64, False)), H)
    assert judged.empty and list(judged.columns) == ["device_id", "predicted_component", "false"]
