"""Dagster asset of one fleet's features[day], computed in DuckDB from the lake."""

import math
from datetime import timedelta

import dagster as dg

from iot_mlops.features.compute import lookback_days
from iot_mlops.features.daily import features_for_days
from iot_mlops.features.online import TABLE as ONLINE_TABLE
from iot_mlops.lake.resource import LakeResource
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.profiles import FleetProfile
from iot_mlops.profiles.schema_types import format_duration

UNIQUE = "one_row_per_device_and_time"


def features_assets(ctx: FleetContext) -> list[dg.AssetsDefinition]:
    """The features asset of one fleet; windows read back across the partition boundary."""
    profile, fleet, key = ctx.profile, ctx.fleet, ctx.key("features")
    spec = profile.features
    reach = dg.TimeWindowPartitionMapping(start_offset=-lookback_days(profile))
    windows = ", ".join(format_duration(w) for w in spec.windows)

    @daily_asset(
        key=key,
        description=(
            f"Per-device features every {format_duration(spec.step)}: rolling {'/'.join(spec.aggregations)} over {windows}, "
            + "".join(part for kind, part in (("error", "error counts, "), ("maintenance", "hours since each component's maintenance, "))
                      if kind in {table.kind for table in profile.source.events})
            + _relative(profile)
            + "device attributes. "
            f"Also refreshes the online table {fleet}/{ONLINE_TABLE} (newest row per device)."
        ),
        group_name=fleet,
        owners=profile.owners,
        kinds={"duckdb", "parquet"},
        partitions_def=ctx.partitions,
        deps=[dg.AssetDep(ctx.key("telemetry"), partition_mapping=reach), dg.AssetDep(ctx.key("events"), partition_mapping=reach),
              ctx.key("devices"), *_earlier_days(key, spec.baseline_reach)],
        check_specs=[dg.AssetCheckSpec(UNIQUE, asset=key, description="No two feature rows share device and time.")],
    )
    def features(context: dg.AssetExecutionContext, lake: LakeResource):
        with lake.connect() as con:
            run = features_for_days(con, lake.lake(), profile, partition_days(context))
        check = dg.AssetCheckResult(check_name=UNIQUE, asset_key=key, passed=run.duplicates == 0,
                                    metadata={"duplicate_keys": run.duplicates})
        metadata = {**run.metadata, **{k: dg.MetadataValue.md(v) for k, v in run.markdown.items()}}
        return dg.MaterializeResult(metadata=metadata, check_results=[check])

    return [features]


def _earlier_days(key: dg.AssetKey, reach: timedelta) -> list[dg.AssetDep]:
    """Device baselines read the stored features of earlier days: a dependency on itself, so a backfill's runs of
    later days wait for those of earlier days (Dagster's backfill daemon requests one run of a self-dependent asset
    at a time, of at most max_partitions_per_run days, and only once the days it reads are materialized)."""
    if not reach:
        return []
    mapping = dg.TimeWindowPartitionMapping(start_offset=-math.ceil(reach / timedelta(days=1)), end_offset=-1)
    return [dg.AssetDep(key, partition_mapping=mapping)]


def _relative(profile: FleetProfile) -> str:
    relative = profile.features.relative
    if relative is None:
        return ""
    parts = []
    if relative.baseline is not None:
        gap = f" (ending {format_duration(relative.baseline_gap)} before)" if relative.baseline_gap else ""
        parts.append(f"z-scores of step means against the device's own last {format_duration(relative.baseline)}{gap}")
    if relative.cohort is not None:
        parts.append(f"differences from the median of devices of the same {relative.cohort}")
    return ", ".join(parts) + ", "
