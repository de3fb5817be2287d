"""Dagster wiring of the telemetry data-quality checks: partitioned asset checks and the data_quality[day] asset."""

import warnings
from datetime import date

import dagster as dg

from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.quality import CHECKS, ERROR, TABLE, QualityResult, check_partition
from iot_mlops.monitoring.quality_store import check_days, stored_results
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.profiles import FleetProfile
from iot_mlops.profiles.schema_types import format_duration


def check_descriptions(profile: FleetProfile) -> dict[str, str]:
    spec = profile.monitoring.quality
    band = lambda s: f"WARN above {s.warn:g}, ERROR above {s.error:g}"  # noqa: E731
    return {
        "stuck_sensors": f"Share of (device, sensor) pairs repeating one value for {format_duration(spec.stuck_window)} or longer ({band(spec.stuck_share)}).",
        "dropouts": f"Share of expected {format_duration(profile.sampling_interval)} samples without a valid row, over reporting devices ({band(spec.dropout_share)}).",
        "out_of_range_share": f"Share of rows read quarantined for a sensor outside its profile range ({band(spec.out_of_range_share)}).",
        "spike_rate": (
            f"Share of rows where a sensor jumps beyond {spec.spike_zscore:g} std of its steps and comes back at the next "
            f"sample ({band(spec.spike_rate)})."
        ),
        "quarantine_share": f"Share of rows read quarantined for any reason ({band(spec.quarantine_share)}).",
    }


def check_metadata(result: QualityResult) -> dict[str, object]:
    return {
        "value": dg.MetadataValue.float(result.value),
        "severity": result.severity,
        "threshold_warn": dg.MetadataValue.float(result.threshold_warn),
        "threshold_error": dg.MetadataValue.float(result.threshold_error),
        "details": dg.MetadataValue.json(result.details),
    }


def evaluation(result: QualityResult, key: dg.AssetKey, day: date, one_day: bool) -> dg.AssetCheckResult | dg.AssetCheckEvaluation:
    """The check's result for one day of the run.

    In a one-partition run Dagster points the result at that partition's materialization. An AssetCheckResult cannot name
    its partition, so a range run yields evaluations naming their day, without that pointer (no public API sets it).
    """
    fields = dict(
        asset_key=key,
        check_name=result.check,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if result.severity == ERROR else dg.AssetCheckSeverity.WARN,
        metadata=check_metadata(result),
        description=f"{result.check} = {result.value:.4%} on {day}: {result.severity}",
    )
    return dg.AssetCheckResult(**fields) if one_day else dg.AssetCheckEvaluation(**fields, partition=day.isoformat())


def quality_assets(ctx: FleetContext) -> list:
    """The five data-quality checks on `<fleet>/telemetry` partitions and the `<fleet>/data_quality` asset."""
    profile, fleet, partitions = ctx.profile, ctx.fleet, ctx.partitions
    telemetry_key, key = ctx.key("telemetry"), ctx.key(TABLE)
    descriptions = check_descriptions(profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned asset checks are a preview in Dagster 1.13
        # After data_quality when both run: the checks then reuse its results for the same telemetry version.
        specs = [dg.AssetCheckSpec(name, asset=telemetry_key, description=descriptions[name], partitions_def=partitions,
                                   additional_deps=[key]) for name in CHECKS]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{fleet}_telemetry_quality",
        can_subset=True,
        description="Data-quality checks of each telemetry day of the run, in two DuckDB passes over the day.",
    )
    def telemetry_quality(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        selected = {k.name for k in context.selected_asset_check_keys}
        store = lake.lake()
        carried: dict = {}
        for day in partition_days(context):
            folder = store.partition_version(fleet, "telemetry", day)
            with lake.connect() as con:
                results = (stored_results(con, store, fleet, day, folder.name)
                           or check_partition(con, store, profile, day, folder, carried))
            for result in results:
                if result.check in selected:
                    yield evaluation(result, telemetry_key, day, one_day=context.has_partition_key)

    @daily_asset(
        key=key,
        description=(
            "One row per telemetry data-quality check and day (stuck sensors, dropouts, out-of-range share, spike rate, "
            "quarantine share): value, WARN/ERROR/OK severity, thresholds and the worst offenders as JSON."
        ),
        group_name=fleet,
        owners=profile.owners,
        kinds={"duckdb", "parquet"},
        partitions_def=partitions,
        deps=[telemetry_key, ctx.key("devices")],
    )
    def data_quality(context: dg.AssetExecutionContext, lake: LakeResource):
        with lake.connect() as con:
            run = check_days(con, lake.lake(), profile, partition_days(context))
        return dg.MaterializeResult(metadata={**run.metadata, **{k: dg.MetadataValue.md(v) for k, v in run.markdown.items()}})

    return [data_quality, telemetry_quality]
