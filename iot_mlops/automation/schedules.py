"""The nightly schedule of one fleet: yesterday's partitions, and the labels whose horizon has just matured."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import dagster as dg

from iot_mlops.automation.jobs import NIGHTLY, asset_keys
from iot_mlops.profiles import FleetProfile


def nightly_requests(profile: FleetProfile, partitions: dg.PartitionsDefinition, now: datetime) -> list[dg.RunRequest]:
    """Run requests for the night before `now`: every daily asset of yesterday, then labels of the matured day."""
    today = now.date()
    horizon_days = math.ceil(profile.target.horizon.total_seconds() / 86400)
    yesterday, matured = today - timedelta(days=1), today - timedelta(days=1 + horizon_days)
    keys = set(partitions.get_partition_keys(current_time=now))
    requests = []
    if str(yesterday) in keys:
        requests.append(dg.RunRequest(run_key=f"nightly:{yesterday}", partition_key=str(yesterday),
                                      asset_selection=asset_keys(profile, NIGHTLY), tags={"iot_mlops/nightly": str(yesterday)}))
    if str(matured) in keys:
        requests.append(dg.RunRequest(run_key=f"nightly-labels:{matured}", partition_key=str(matured),
                                      asset_selection=asset_keys(profile, ("labels",)), tags={"iot_mlops/nightly": str(yesterday)}))
    return requests


def nightly_schedule(profile: FleetProfile, partitions: dg.PartitionsDefinition) -> dg.ScheduleDefinition:
    spec = profile.monitoring.schedule

    @dg.schedule(
        name=f"{profile.name}_nightly", job_name=f"{profile.name}_daily", cron_schedule=spec.cron,
        execution_timezone=spec.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(f"Every night ({spec.cron}, {spec.timezone}): yesterday's telemetry, events, features, predictions, "
                     "drift report, data quality, feedback summary and model performance, plus the labels that matured. "
                     "The retraining sensors then decide."),
    )
    def nightly(context: dg.ScheduleEvaluationContext):
        requests = nightly_requests(profile, partitions, context.scheduled_execution_time)
        return requests or dg.SkipReason(f"{profile.name}: no partition for the night before "
                                         f"{context.scheduled_execution_time.date()}")

    return nightly
