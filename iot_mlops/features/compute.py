"""Compute feature partitions from the lake; any day range gives the same rows per day."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import duckdb

from iot_mlops.features.online import update_online_features
from iot_mlops.features.sql import features_sql, rounded
from iot_mlops.lake import Lake, row_count, sql_str
from iot_mlops.profiles.schema import FleetProfile


class FeatureInputError(ValueError):
    """Features cannot be computed: an upstream table is missing."""


@dataclass
class FeatureReport:
    rows: dict[date, int]
    columns: list[str]
    devices_online: int


def lookback_days(profile: FleetProfile) -> int:
    """Whole days of telemetry before a partition that its windows reach into."""
    reach = profile.features.lookback + profile.features.step
    return math.ceil(reach / timedelta(days=1))


def build_features(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> None:
    """Create TEMP TABLE features for feature times in [min(days), max(days) + 1 day)."""
    fleet = profile.name
    first, last = min(days), max(days)
    span = (last - first).days + 1 + lookback_days(profile)
    telemetry = lake.scan(fleet, "telemetry", [last - timedelta(days=i) for i in range(span)][::-1])
    if telemetry is None:
        raise FeatureInputError(f"{fleet}: no telemetry partitions for {first}..{last}; materialize {fleet}/telemetry first")
    devices_file = lake.table_file(fleet, "devices")
    if not devices_file.is_file():
        raise FeatureInputError(f"{fleet}: no devices table; materialize {fleet}/devices first")
    events = lake.scan(fleet, "events", [d for d in lake.partitions(fleet, "events") if d <= last])
    start = datetime.combine(first, time())
    end = datetime.combine(last + timedelta(days=1), time())
    query = features_sql(profile, telemetry, events, f"read_parquet({sql_str(devices_file)})", str(start), str(end))
    con.execute(f"CREATE OR REPLACE TEMP TABLE features AS {query}")


def compute_features(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> FeatureReport:
    """Compute and write feature partitions for the days, then refresh online features."""
    build_features(con, lake, profile, days)
    columns = [(name, dtype) for name, dtype, *_ in con.execute("DESCRIBE features").fetchall()]
    select = rounded(columns)
    rows = {}
    for day in sorted(days):
        nxt = day + timedelta(days=1)
        query = (
            f"SELECT {select} FROM features WHERE ts >= TIMESTAMP {sql_str(day)} AND ts < TIMESTAMP {sql_str(nxt)} "
            "ORDER BY device_id, ts"
        )
        rows[day] = row_count(con, lake.write_partition(con, profile.name, "features", day, query))
    written = lake.scan(profile.name, "features", days)
    online = update_online_features(con, lake, profile.name, f"SELECT * FROM {written}") if written else 0
    return FeatureReport(rows=rows, columns=[c for c, _ in columns], devices_online=online)
