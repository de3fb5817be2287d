"""The nightly schedule of one fleet: yesterday's partitions, and the labels whose horizon has just matured."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import dagster as dg

from iot_mlops.names import NIGHTLY, NIGHTLY_TAG, daily_job, nightly_schedule_name
from iot_mlops.partitions import FleetContext


def nightly_requests(ctx: FleetContext, now: datetime) -> list[dg.RunRequest]:
    """Run requests for the night before `now`: every daily asset of yesterday, then labels of the matured day."""
    profile, today = ctx.profile, now.date()
    horizon_days = math.ceil(profile.target.horizon.total_seconds() / 86400)
    yesterday, matured = today - timedelta(days=1), today - timedelta(days=1 + horizon_days)
    keys = set(ctx.partitions.get_partition_keys(current_time=now))
    requests = []
    if str(yesterday) in keys:
        requests.append(dg.RunRequest(run_key=f"nightly:{yesterday}", partition_key=str(yesterday),
                                      asset_selection=ctx.keys(NIGHTLY), tags={NIGHTLY_TAG: str(yesterday)}))
    if str(matured) in keys:
        requests.append(dg.RunRequest(run_key=f"nightly-labels:{matured}", partition_key=str(matured),
                                      asset_selection=ctx.keys(("labels",)), tags={NIGHTLY_TAG: str(yesterday)}))
    return requests


def nightly_schedule(ctx: FleetContext) -> dg.ScheduleDefinition:
    profile, spec = ctx.profile, ctx.profile.monitoring.schedule

    @dg.schedule(
        name=nightly_schedule_name(profile.name), job_name=daily_job(profile.name), cron_schedule=spec.cron,
        execution_timezone=spec.timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(f"Every night ({spec.cron}, {spec.timezone}): yesterday's telemetry, events, features, predictions, "
                     "drift report, data quality, feedback summary and model performance, plus the labels that matured. "
                     "The retraining sensors then decide."),
    )
    def nightly(context: dg.ScheduleEvaluationContext):
        requests = nightly_requests(ctx, context.scheduled_execution_time)
        return requests or dg.SkipReason(f"{profile.name}: no partition for the night before "
                                         f"{context.scheduled_execution_time.date()}")

    return nightly
