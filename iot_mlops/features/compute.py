"""Compute feature partitions from the lake; any day range gives the same rows per day."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import duckdb

from iot_mlops.features.online import update_online_features
from iot_mlops.features.sql import features_sql, rounded
from iot_mlops.lake import Lake, sql_str
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


BATCH_ROWS = 500_000  # rows of days written by one partitioned COPY: it holds them in memory
DAY = "__day"


def compute_features(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> FeatureReport:
    """Compute and write feature partitions for the days, then refresh online features.

    Days are written in batches of up to BATCH_ROWS rows, each batch by one scan of the
    features table; a day with more rows is written alone. Either way a day's file holds
    its rows ordered by device and time, and its bytes do not depend on the other days.
    """
    build_features(con, lake, profile, days)
    columns = [(name, dtype) for name, dtype, *_ in con.execute("DESCRIBE features").fetchall()]
    select = rounded(columns)
    counts = dict(con.execute("SELECT CAST(ts AS DATE), count(*) FROM features GROUP BY ALL").fetchall())
    rows = {day: int(counts.get(day, 0)) for day in sorted(days)}
    batches: list[list[date]] = [[]]
    for day, n in rows.items():
        if n == 0 or n > BATCH_ROWS:
            where = "false" if n == 0 else f"CAST(ts AS DATE) = DATE {sql_str(day)}"
            lake.write_partition(con, profile.name, "features", day, f"SELECT {select} FROM features WHERE {where} ORDER BY device_id, ts")
            continue
        if sum(rows[d] for d in batches[-1]) + n > BATCH_ROWS:
            batches.append([])
        batches[-1].append(day)
    for batch in filter(None, batches):
        listed = ", ".join(f"DATE {sql_str(d)}" for d in batch)
        query = f"SELECT {select}, CAST(ts AS DATE) AS {DAY} FROM features WHERE CAST(ts AS DATE) IN ({listed}) ORDER BY device_id, ts"
        lake.write_partitions(con, profile.name, "features", query, DAY)
    newest = f"SELECT {select} FROM features QUALIFY row_number() OVER (PARTITION BY device_id ORDER BY ts DESC) = 1"
    online = update_online_features(con, lake, profile.name, newest)
    return FeatureReport(rows=rows, columns=[c for c, _ in columns], devices_online=online)
