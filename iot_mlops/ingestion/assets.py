"""Dagster assets of one fleet's ingestion: devices, telemetry[day], events[day]."""


import json
from pathlib import Path

import dagster as dg

from iot_mlops.ingestion.ingest import ingest_devices, ingest_events, ingest_telemetry
from iot_mlops.ingestion.staging import IngestReport
from iot_mlops.lake.resource import LakeResource
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.profiles import source_folder
from iot_mlops.profiles.schema_types import format_duration
from iot_mlops.sources.landing import ensure_days, ensure_devices

ACCOUNTED = "rows_accounted_for"


def report_metadata(report: IngestReport, lake_path: Path) -> dict[str, object]:
    """Counts by reason, per-day counts and the lake path, for the Dagster UI."""
    total = report.total()
    per_day = {str(d): {"read": c.rows_read, "valid": c.rows_valid, "quarantined": c.rows_quarantined} for d, c in report.days.items()}
    # A range run attaches the same metadata to every partition, so a run total is no partition's row count.
    row_count = {"dagster/row_count": total.rows_valid} if len(report.days) == 1 else {}
    return {
        **row_count,
        "rows_per_day": dg.MetadataValue.json(per_day),
        "rows_read": total.rows_read,
        "rows_valid": total.rows_valid,
        "rows_quarantined": total.rows_quarantined,
        "quarantined_by_reason": dg.MetadataValue.json(total.by_reason),
        "quarantined_by_detail": dg.MetadataValue.json(total.by_detail),
        "ignored_columns": dg.MetadataValue.json(report.ignored_columns),
        "partitions_written": len(report.days),
        "lake_path": dg.MetadataValue.path(str(lake_path)),
    }


def accounted_check(report: IngestReport, key: dg.AssetKey) -> dg.AssetCheckResult:
    """Rows read == rows valid + rows quarantined, counted from the files written."""
    bad = {str(d): vars(c) for d, c in report.days.items() if not c.accounted_for}
    total = report.total()
    return dg.AssetCheckResult(
        check_name=ACCOUNTED,
        asset_key=key,
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_read": total.rows_read,
            "rows_valid_written": total.rows_valid,
            "rows_quarantined_written": total.rows_quarantined,
            "days_not_accounted_for": dg.MetadataValue.json(json.loads(json.dumps(bad, default=str))),
        },
    )


def ingestion_assets(ctx: FleetContext) -> list[dg.AssetsDefinition]:
    """devices, telemetry and events assets of one fleet; whole-table history rows go to its first partition."""
    profile, fleet, partitions = ctx.profile, ctx.fleet, ctx.partitions
    common = dict(group_name=fleet, owners=profile.owners, kinds={"duckdb", "parquet"})
    devices_key, telemetry_key, events_key = ctx.keys(("devices", "telemetry", "events"))

    def folder(lake: LakeResource) -> Path:
        return source_folder(profile, ctx.profile_dir, lake.landing())

    @dg.asset(
        key=devices_key,
        description=f"Static attributes of every {profile.device_type} ({', '.join(a.name for a in profile.source.devices.attributes)}); invalid rows go to its quarantine.parquet, published with the valid rows.",
        check_specs=[dg.AssetCheckSpec(ACCOUNTED, asset=devices_key, description="Rows read = valid + quarantined.")],
        **common,
    )
    def devices(context: dg.AssetExecutionContext, lake: LakeResource):
        src = folder(lake)
        ensure_devices(profile, src)
        with lake.connect() as con:
            report = ingest_devices(con, lake.lake(), profile, src)
        path = lake.lake().table_file(fleet, "devices")
        return dg.MaterializeResult(metadata=report_metadata(report, path), check_results=[accounted_check(report, devices_key)])

    @daily_asset(
        key=telemetry_key,
        description=(
            f"Validated {format_duration(profile.sampling_interval)} telemetry of {', '.join(profile.sensor_names)}, one Parquet partition per day. "
            "Rows failing a profile rule go to the day's quarantine.parquet with their reason, published together with its valid rows."
        ),
        partitions_def=partitions,
        deps=[devices_key],
        check_specs=[dg.AssetCheckSpec(ACCOUNTED, asset=telemetry_key, description="Rows read = valid + quarantined.")],
        **common,
    )
    def telemetry(context: dg.AssetExecutionContext, lake: LakeResource):
        days = partition_days(context)
        src = folder(lake)
        simulated = ensure_days(profile, src, days)
        if simulated:
            context.log.info(f"simulated landing files for {len(simulated)} day(s)")
        with lake.connect() as con:
            report = ingest_telemetry(con, lake.lake(), profile, src, days)
        path = lake.lake().table_dir(fleet, "telemetry")
        return dg.MaterializeResult(metadata=report_metadata(report, path), check_results=[accounted_check(report, telemetry_key)])

    @daily_asset(
        key=events_key,
        description=(
            "Failures (component), maintenance (component) and error (code) events, one table with kind and value. "
            "The first partition also carries the history from before it."
        ),
        partitions_def=partitions,
        deps=[devices_key],
        check_specs=[dg.AssetCheckSpec(ACCOUNTED, asset=events_key, description="Rows read = valid + quarantined.")],
        **common,
    )
    def events(context: dg.AssetExecutionContext, lake: LakeResource):
        days = partition_days(context)
        src = folder(lake)
        ensure_days(profile, src, days)
        with lake.connect() as con:
            report = ingest_events(con, lake.lake(), profile, src, days)
        path = lake.lake().table_dir(fleet, "events")
        return dg.MaterializeResult(metadata=report_metadata(report, path), check_results=[accounted_check(report, events_key)])

    return [devices, telemetry, events]
