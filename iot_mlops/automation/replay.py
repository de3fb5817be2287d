"""Nights and sensor ticks in this process, as the Dagster daemon would run them: for the demo and tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg

from iot_mlops.automation.sensors import CONDITIONS
from iot_mlops.names import REASON_TAG, SCHEDULE_TAG, daily_job, nightly_schedule_name, retraining_job, sensor_name

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Tick:
    """One sensor evaluation: what it decided, and the run it started if any."""

    sensor: str
    action: str  # "requested", "skipped" or "failed"
    reason: str
    run_key: str | None = None
    run_id: str | None = None
    run_success: bool | None = None


def run_night(defs: dg.Definitions, instance: dg.DagsterInstance, fleet: str, night_of: date,
              run_config: dict | None = None) -> list[dg.ExecuteInProcessResult]:
    """Execute the nightly schedule's run requests for the night after `night_of` (so `night_of` is 'yesterday'),
    tagged as the schedule's runs."""
    schedule = defs.resolve_schedule_def(nightly_schedule_name(fleet))
    tz_now = datetime.combine(night_of + timedelta(days=1), time(2, 0), tzinfo=UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tz_now,
                                   repository_def=defs.get_repository_def()) as context:
        data = schedule.evaluate_tick(context)
    job = defs.resolve_job_def(daily_job(fleet))
    results = []
    for request in data.run_requests or []:
        result = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, asset_selection=list(request.asset_selection or []),
            tags={**request.tags, SCHEDULE_TAG: schedule.name}, run_config={**QUIET, **(run_config or {})}, raise_on_error=False,
        )
        results.append(result)
    return results


def tick_sensors(defs: dg.Definitions, instance: dg.DagsterInstance, fleet: str, run_config: dict | None = None) -> list[Tick]:
    """Evaluate every retraining sensor of `fleet` once; a requested run executes at once (the daemon would queue it)."""
    resources = dict(defs.resources or {})
    retraining = defs.resolve_job_def(retraining_job(fleet))
    ticks = []
    for name in CONDITIONS:
        sensor = defs.resolve_sensor_def(sensor_name(fleet, name))
        with dg.build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
            data = sensor.evaluate_tick(context)
        if not data.run_requests:
            ticks.append(Tick(name, "skipped", data.skip_message or ""))
            continue
        for request in data.run_requests:
            result = retraining.execute_in_process(instance=instance, tags=dict(request.tags),
                                                   run_config={**QUIET, **(run_config or {})}, raise_on_error=False)
            ticks.append(Tick(name, "requested", request.tags.get(REASON_TAG, ""), request.run_key, result.run_id,
                              result.success))
    return ticks
