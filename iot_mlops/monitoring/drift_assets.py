"""Dagster asset `<fleet>/drift_report[day]`: each day's features against the training reference profile."""

import dagster as dg
from pydantic import Field

from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.drift import TABLE
from iot_mlops.monitoring.drift_day import DayReport, report_day
from iot_mlops.monitoring.reference import load_reference_profile, load_reference_sample
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.settings import get_settings


class DriftReportConfig(dg.Config):
    evidently: bool = Field(True, description="Also run Evidently's DataDriftPreset and log its HTML report to "
                                              "MLflow (seconds per day; turn off for long backfills).")


def day_metadata(report: DayReport) -> dict:
    """The day's plain metadata, its Markdown entries, and the link to Evidently's report in MLflow."""
    metadata = {**report.metadata, **{k: dg.MetadataValue.md(v) for k, v in report.markdown.items()}}
    if report.url and report.html and report.verdicts:
        metadata["evidently_report"] = dg.MetadataValue.url(report.url)
        metadata["evidently_html"] = dg.MetadataValue.path(report.html)
    return metadata


def drift_assets(ctx: FleetContext) -> list:
    """The drift_report asset of one fleet."""
    profile, fleet, spec, key = ctx.profile, ctx.fleet, ctx.profile.monitoring.drift, ctx.key(TABLE)

    @daily_asset(
        key=key, kinds={"duckdb", "parquet", "evidently"}, group_name=fleet, owners=profile.owners,
        partitions_def=ctx.partitions,
        deps=ctx.keys(("features", "training_dataset")),
        description=(
            f"Each feature of the day against the training reference profile: PSI on the reference's {spec.bins} quantile "
            f"bins (>= {spec.psi_threshold}) and chi-square for categories (p < {spec.p_value})"
            + (f", KS for {', '.join(spec.ks_features)}" if spec.ks_features else "")
            + f"; dataset drift at a drifted share >= {spec.dataset_drift_share}. "
            "Evidently's DataDriftPreset on a bounded sample gives its own verdict beside ours, and its HTML report "
            "(plots of the drifted columns) is logged to MLflow."
        ),
    )
    def drift_report(context: dg.AssetExecutionContext, config: DriftReportConfig, lake: LakeResource,
                     registry: RegistryResource):
        store = lake.lake()
        reference = load_reference_profile(store, fleet)
        sample = load_reference_sample(reference)
        mlflow = registry.registry() if config.evidently else None
        ui_url = get_settings().mlflow_ui_url
        with lake.connect() as con:
            for day in partition_days(context):
                report = report_day(con, store, profile, day, reference, sample, mlflow, ui_url)
                # Per partition, so a range run still plots each day's drift share.
                context.add_asset_metadata(day_metadata(report), partition_key=day.isoformat())
        return dg.MaterializeResult()

    return [drift_report]
