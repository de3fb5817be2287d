"""Dagster assets of one fleet's feedback_summary[day] and model_performance[day]."""

from datetime import datetime, time, timedelta

import dagster as dg

from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring import feedback as fbs
from iot_mlops.monitoring import performance as perf
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.profiles.schema_types import format_duration


def monitoring_assets(ctx: FleetContext) -> list[dg.AssetsDefinition]:
    """feedback_summary and model_performance of one fleet, keys prefixed by the fleet name."""
    profile, fleet, partitions, key = ctx.profile, ctx.fleet, ctx.partitions, ctx.key
    # Range runs like the other daily assets; a range run's headline metadata is its last day's.

    @daily_asset(
        key=key(fbs.TABLE), group_name=fleet, owners=profile.owners, kinds={"duckdb", "parquet"}, partitions_def=partitions,
        deps=[key("predictions"), key("features"), key("devices")],
        description=(
            "Feedback received on the day (and everything up to it): counts by type, mean rating, false-positive rate "
            "among alerts by device model and predicted component, devices with repeated false positives, and the "
            "features that most set false positives apart from correct alerts (standardized mean difference)."
        ),
    )
    def feedback_summary(context: dg.AssetExecutionContext, lake: LakeResource, store: StoreResource):
        days = partition_days(context)
        fb = store.feedback().frame(fleet, until=datetime.combine(days[-1] + timedelta(days=1), time()))
        with lake.connect() as con:
            run = fbs.summarize_days(con, lake.lake(), profile, fb, days)
        return dg.MaterializeResult(metadata=run.metadata)

    @daily_asset(
        key=key(perf.TABLE), group_name=fleet, owners=profile.owners, kinds={"duckdb", "parquet"}, partitions_def=partitions,
        deps=[key("predictions"), key("events")],
        description=(
            f"Live performance per model version over matured predictions only (horizon {format_duration(profile.target.horizon)} passed and "
            "covered by ingested events): row-level precision and recall per component and overall, event-level recall, "
            "and the count of predictions still waiting for ground truth."
        ),
    )
    def model_performance(context: dg.AssetExecutionContext, lake: LakeResource):
        with lake.connect() as con:
            run = perf.performance_days(con, lake.lake(), profile, partition_days(context))
        return dg.MaterializeResult(metadata=run.metadata)

    return [feedback_summary, model_performance]
