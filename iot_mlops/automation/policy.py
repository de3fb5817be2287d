"""Retraining policy: when a condition fires, and whether a run may start now (plain functions, no Dagster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from iot_mlops.opstore.decisions import Decision
from iot_mlops.profiles.monitoring import RetrainingPolicy


@dataclass(frozen=True)
class Condition:
    """What a sensor saw: whether its condition holds, why, the figures, and a key naming this occurrence."""

    sensor: str
    fired: bool
    reason: str
    key: str | None = None  # one key, one run: the run_key derives from it
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The sensor's decision: trigger a run, skip with a reason, or nothing to decide."""

    action: str  # "trigger", "skip" or "none"
    reason: str
    condition: Condition

    @property
    def run_key(self) -> str | None:
        return f"{self.condition.sensor}:{self.condition.key}" if self.action == "trigger" else None


def consecutive_days(days: list[date]) -> list[date]:
    """The trailing run of calendar-consecutive days of a sorted list."""
    run: list[date] = []
    for day in days:
        run = run + [day] if run and day - run[-1] == timedelta(days=1) else [day]
    return run


def drift_condition(history: list[tuple[date, float]], policy: RetrainingPolicy, last_fired_day: date | None,
                    seasonal: dict[date, list[str]] | None = None) -> Condition:
    """Drift share >= high on K consecutive partitions, armed again only after a day below the low threshold.

    A day whose named seasonal signals are beyond the reference (`seasonal`: day -> sensors) counts as a high day
    too, whatever its share: those sensors were compared with the same hour and month of the reference, so what is
    left is a level the model never saw in training, and it extrapolates there. Retraining on the days since puts
    the new level inside its training data (the champion gate still decides whether the new model serves). One
    sensor's features are a small share of all, so the share alone would never ask for that.
    """
    history, seasonal = sorted(history), seasonal or {}
    if not history:
        return Condition("drift_sensor", False, "no drift reports yet")
    last_day, last_share = history[-1]
    high = lambda day, share: share >= policy.drift_share_high or bool(seasonal.get(day))
    armed = last_fired_day is None or any(day > last_fired_day and share < policy.drift_share_low and not seasonal.get(day)
                                          for day, share in history)
    high_days = []
    for day, share in history:
        high_days = high_days + [day] if high(day, share) else []
    streak = consecutive_days(high_days) if high_days and high_days[-1] == last_day else []
    beyond = sorted({s for day in streak for s in seasonal.get(day, [])})
    figures = {"day": str(last_day), "drift_share": round(last_share, 4), "consecutive_days": len(streak),
               "high": policy.drift_share_high, "low": policy.drift_share_low, "needed_days": policy.drift_consecutive_days,
               "armed": armed, "seasonal_beyond_reference": beyond}
    if len(streak) < policy.drift_consecutive_days:
        return Condition("drift_sensor", False, f"drift share {last_share:.2f} on {last_day}: {len(streak)} of "
                         f"{policy.drift_consecutive_days} consecutive days at or above {policy.drift_share_high}", figures=figures)
    if not armed:
        return Condition("drift_sensor", False, f"drift persists since {streak[0]} but already triggered on {last_fired_day}; "
                         f"re-arms after a day below {policy.drift_share_low}", figures=figures)
    seasonal_note = f"; seasonal signals beyond the reference: {', '.join(beyond)}" if beyond else ""
    return Condition("drift_sensor", True, f"drift share >= {policy.drift_share_high}{' or a seasonal signal beyond the reference' if beyond else ''} "
                     f"on {len(streak)} consecutive days ({streak[0]}..{last_day}, last {last_share:.2f}){seasonal_note}",
                     key=f"drift:{streak[0]}", figures=figures)


def feedback_condition(count: int, false_positive_rate: float | None, policy: RetrainingPolicy, since_version: str) -> Condition:
    """False-positive rate above threshold with at least N feedback records since the last training."""
    figures = {"feedback": count, "false_positive_rate": false_positive_rate, "threshold": policy.false_positive_rate,
               "min_feedback": policy.min_feedback, "since_version": since_version}
    if count < policy.min_feedback or false_positive_rate is None:
        return Condition("feedback_sensor", False, f"{count} of {policy.min_feedback} feedback records since v{since_version}",
                         figures=figures)
    if false_positive_rate <= policy.false_positive_rate:
        return Condition("feedback_sensor", False, f"false-positive rate {false_positive_rate:.2f} within "
                         f"{policy.false_positive_rate}", figures=figures)
    return Condition("feedback_sensor", True, f"false-positive rate {false_positive_rate:.2f} > {policy.false_positive_rate} "
                     f"over {count} feedback records since v{since_version}", key=f"feedback:v{since_version}", figures=figures)


def performance_condition(day: date | None, recall: float | None, matured_failures: int, policy: RetrainingPolicy,
                          version: str | None) -> Condition:
    """Live recall of the champion over matured predictions below the floor, once enough failures have matured."""
    figures = {"day": str(day), "recall": recall, "floor": policy.recall_floor, "matured_failures": matured_failures,
               "min_matured_failures": policy.min_matured_failures, "model_version": version}
    if day is None or recall is None or recall != recall or matured_failures < policy.min_matured_failures:
        return Condition("performance_sensor", False, f"{matured_failures} of {policy.min_matured_failures} matured failures "
                         "to judge live recall", figures=figures)
    if recall >= policy.recall_floor:
        return Condition("performance_sensor", False, f"live recall {recall:.2f} at or above {policy.recall_floor}", figures=figures)
    return Condition("performance_sensor", True, f"live recall {recall:.2f} of v{version} below {policy.recall_floor} on "
                     f"{day} ({matured_failures} matured failures)", key=f"performance:v{version}:{day}", figures=figures)


def quality_condition(history: list[tuple[date, str]], policy: RetrainingPolicy) -> Condition:
    """ERROR data-quality checks on N consecutive days."""
    history = sorted(history)
    if not history:
        return Condition("data_quality_sensor", False, "no data-quality results yet")
    error_days = []
    for day, severity in history:
        error_days = error_days + [day] if severity == "ERROR" else []
    streak = consecutive_days(error_days) if error_days and error_days[-1] == history[-1][0] else []
    figures = {"day": str(history[-1][0]), "worst": history[-1][1], "consecutive_error_days": len(streak),
               "needed_days": policy.quality_error_days}
    if len(streak) < policy.quality_error_days:
        return Condition("data_quality_sensor", False, f"{len(streak)} of {policy.quality_error_days} consecutive days "
                         "with ERROR checks", figures=figures)
    return Condition("data_quality_sensor", True, f"ERROR data-quality checks on {len(streak)} consecutive days "
                     f"({streak[0]}..{streak[-1]})", key=f"quality:{streak[0]}", figures=figures)


def decide(condition: Condition, policy: RetrainingPolicy, *, now: datetime, triggers: list[Decision], running: int,
           new_days: int) -> Verdict:
    """Whether a fired condition may start a run now.

    Once per condition, nothing in flight, past the cooldown, under the daily cap, enough new data.
    """
    if not condition.fired:
        return Verdict("none", condition.reason, condition)
    run_key = f"{condition.sensor}:{condition.key}"
    if any((d.details or {}).get("run_key") == run_key for d in triggers):
        return Verdict("skip", f"{condition.reason}; skipped: this condition already started a run ({run_key})", condition)
    if running:
        return Verdict("skip", f"{condition.reason}; skipped: a retraining run is already queued or running", condition)
    last = max((d.created_at for d in triggers), default=None)
    if last is not None and now - last < policy.cooldown:
        until = last + policy.cooldown
        return Verdict("skip", f"{condition.reason}; skipped: cooldown until {until:%Y-%m-%d %H:%M} UTC "
                       f"(last retraining triggered {last:%Y-%m-%d %H:%M})", condition)
    today = sum(1 for d in triggers if d.created_at.date() == now.date())
    if today >= policy.max_per_day:
        return Verdict("skip", f"{condition.reason}; skipped: {today} retrainings already today (max {policy.max_per_day})", condition)
    if new_days < policy.min_new_days:
        return Verdict("skip", f"{condition.reason}; skipped: {new_days} new feature days since the last training dataset "
                       f"(min {policy.min_new_days})", condition)
    return Verdict("trigger", condition.reason, condition)
