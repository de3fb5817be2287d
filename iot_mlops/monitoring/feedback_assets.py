"""Dagster assets of one fleet's feedback_summary[day] and model_performance[day]."""

import math
from datetime import datetime, time, timedelta

import dagster as dg

from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring import feedback as fbs
from iot_mlops.monitoring import performance as perf
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.profiles.schema_types import format_duration


def _float(value: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(float(value) if value is not None else math.nan)


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
        per_day = {}
        with lake.connect() as con:
            for day in days:
                per_day[day] = fbs.compute_feedback_summary(con, lake.lake(), profile, fb, day)
        last = per_day[days[-1]]
        day_view, cumulative = last["day"], last["cumulative"]
        return dg.MaterializeResult(metadata={
            "feedback": day_view.feedback,
            "false_positive_rate": _float(day_view.false_positive_rate),
            "mean_rating": _float(day_view.mean_rating),
            "cumulative_feedback": cumulative.feedback,
            "cumulative_false_positive_rate": _float(cumulative.false_positive_rate),
            "by_type": dg.MetadataValue.json(day_view.by_type),
            "summary": dg.MetadataValue.json({"day": fbs.as_json(day_view), "cumulative": fbs.as_json(cumulative)}),
            "per_day": dg.MetadataValue.json({str(d): {"feedback": v["day"].feedback,
                                                       "false_positive_rate": fbs.as_json(v["day"])["false_positive_rate"]}
                                              for d, v in per_day.items()}),
            "lake_path": dg.MetadataValue.path(str(lake.lake().table_dir(fleet, fbs.TABLE))),
        })

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
        days = partition_days(context)
        heads = {}
        with lake.connect() as con:
            for day in days:
                heads[day] = perf.headline(perf.compute_performance(con, lake.lake(), profile, day))
        head = heads[days[-1]]
        return dg.MaterializeResult(metadata={
            "recall": _float(head["recall"]),
            "precision": _float(head["precision"]),
            "event_recall": _float(head["event_recall"]),
            "pending": head["pending"],
            "matured": head["matured"],
            "matured_positives": head["matured_positives"],
            "model_version": str(head["model_version"] or "none"),
            "components": dg.MetadataValue.json({c: {k: (v if math.isfinite(v) else None) for k, v in m.items()}
                                                 for c, m in head["components"].items()}),
            "lake_path": dg.MetadataValue.path(str(lake.lake().table_dir(fleet, perf.TABLE))),
        })

    return [feedback_summary, model_performance]
