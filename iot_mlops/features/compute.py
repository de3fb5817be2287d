"""Compute feature partitions from the lake; any day range gives the same rows per day."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from iot_mlops.features.online import update_online_features
from iot_mlops.features.relative import baseline_sql, cohort_sql, history_days, relative_columns
from iot_mlops.features.sql import (
    DECIMALS,
    bucket_sql,
    event_sql,
    event_state_sql,
    first_label_at_or_after,
    ident,
    label_of,
    rolling_sql,
    step_sql,
    window_sql,
)
from iot_mlops.lake import Lake, parquet
from iot_mlops.profiles.schema import FleetProfile

BATCH_ROWS = 65_536  # rows per Arrow batch streamed out of the sorted result


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


def feature_query(lake: Lake, profile: FleetProfile, days: list[date]) -> str:
    """The feature query for feature times in [min(days), max(days) + 1 day), over the lake's partitions."""
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
    history = lake.scan(fleet, "features", _baseline_history(lake, profile, start))
    return features_sql(profile, telemetry, events, f"{parquet(devices_file)}", str(start), str(end), history)


def features_sql(profile: FleetProfile, telemetry: str, events: str | None, devices: str, start: str, end: str,
                 history: str | None = None) -> str:
    """The full feature query for feature times t in [start, end); `history`: stored feature rows before start (baselines).

    Event buckets join the telemetry buckets (a full join: events also fall in buckets without
    telemetry, or before it), so one window pass over each device's buckets computes the
    rolling aggregates and finds the event state; only buckets with telemetry are kept.
    """
    step = profile.features.step
    first, stop = (first_label_at_or_after(datetime.fromisoformat(x), step) for x in (start, end))
    relative, helpers = relative_columns(profile)
    rolling = rolling_sql(profile) + step_sql(profile) + relative
    events_src = events or "(SELECT NULL::VARCHAR AS device_id, NULL::TIMESTAMP AS ts, NULL::VARCHAR AS kind, NULL::VARCHAR AS value WHERE false)"
    state = event_state_sql(profile, events_src)
    marks, event_windows, event_joins, event_columns = event_sql(profile) if state else ("", [], [], [])
    windows = "".join(", " + w for w in window_sql(profile) + event_windows)
    attrs = profile.source.devices.attributes
    attr_cols = [f"round(d.{ident(a.name)}, {DECIMALS}) AS {ident(a.name)}" if a.kind == "numeric" else f"d.{ident(a.name)}" for a in attrs]
    has_telemetry = f"{ident(profile.sensor_names[0] + '__n')} IS NOT NULL"  # a count: NULL only on rows of events alone
    lookups = [w.rsplit(" AS ", 1)[1] for w in event_windows]
    buckets = f"b FULL JOIN ({marks}) USING (device_id, k)" if state else "b"
    base = baseline_sql(profile, history, first, stop, has_telemetry)
    cohort, cohort_joins, cohort_columns = cohort_sql(profile, devices, first, stop, has_telemetry)
    ctes = [f"b AS ({bucket_sql(profile, telemetry)})", *([f"es AS ({state})"] if state else []), *([f"base AS ({base})"] if base else [])]
    ctes += [
        f"wb AS (SELECT *{windows} FROM {buckets} WINDOW w AS (PARTITION BY device_id ORDER BY k))",
        (f"rolled AS (SELECT {', '.join(['device_id', label_of('k', step) + ' AS t', *lookups, *rolling])} "
         f"FROM wb{' LEFT JOIN base USING (device_id, k)' if base else ''} WHERE k >= {first} AND k < {stop} AND {has_telemetry})"),
        *([f"cohort AS ({cohort})"] if cohort else []),
    ]
    hidden = ", ".join(ident(c) for c in ["device_id", "t", *lookups, *helpers])
    columns = ", ".join(["r.device_id", "r.t AS ts", f"r.* EXCLUDE ({hidden})", *event_columns, *cohort_columns, *attr_cols])
    joins = " ".join([*event_joins, f"LEFT JOIN {devices} d ON d.device_id = r.device_id", *cohort_joins])
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {columns}\nFROM rolled r {joins}\n"


def _baseline_history(lake: Lake, profile: FleetProfile, start: datetime) -> list[date]:
    """Earlier days whose stored features the baselines read; a day with telemetry but no features is an error.

    Computing on without it would give the run's first days a shorter baseline than a day-by-day run gives them:
    features silently different depending on the order days were materialized in.
    """
    days = history_days(profile, start)
    if not days:
        return days
    fleet = profile.name
    stored, landed = set(lake.partitions(fleet, "features")), set(lake.partitions(fleet, "telemetry"))
    missing = [d for d in days if d in landed and d not in stored]
    if missing:
        raise FeatureInputError(f"{fleet}: features from {start.date()} compare each device with its baseline in the features of "
                                f"{missing[0]}..{missing[-1]}, which are missing ({len(missing)} days with telemetry): "
                                "materialize those days first, or include them in this run")
    return days


def build_features(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> None:
    """Create TEMP TABLE features for feature times in [min(days), max(days) + 1 day)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE features AS {feature_query(lake, profile, days)}")


def compute_features(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> FeatureReport:
    """Compute and write feature partitions for the days, then refresh online features.

    The result streams out of DuckDB sorted by day, device and time; finished days are
    encoded as Parquet, several at a time, while later ones are still read, then all are
    moved into place (`Lake.write_arrow_partitions`). A day's file holds its rows in device
    and time order, so its bytes do not depend on the other days of the run.
    """
    wanted = sorted(set(days))
    query = f"SELECT * FROM ({feature_query(lake, profile, days)}) ORDER BY CAST(ts AS DATE), device_id, ts"
    workers = 2 * _threads(con)
    # Its own cursor: another statement on a connection silently ends the result it is streaming.
    stream = con.cursor()
    reader = stream.sql(query).to_arrow_reader(BATCH_ROWS)
    schema = reader.schema
    rows: dict[date, int] = {}
    newest = _NewestDays()

    def partitions() -> Iterator[tuple[date, pa.Table]]:
        streamed = _days(reader)
        upcoming = next(streamed, None)
        for day in wanted:
            while upcoming is not None and upcoming[0] < day:  # rows of a day not asked for: not written
                upcoming = next(streamed, None)
            if upcoming is not None and upcoming[0] == day:
                table, upcoming = upcoming[1], next(streamed, None)
                newest.add(day, table)
            else:
                table = _empty(schema)
            rows[day] = table.num_rows
            yield day, table

    try:
        lake.write_arrow_partitions(profile.name, "features", partitions(), workers)
    finally:
        reader.close()
        stream.close()
    # The newest rows are read back from the partitions just written: every row of the days holding
    # a device's newest row (the merge keeps the newest per device). Without rows, an empty day file.
    newest_rows = f"SELECT * FROM {lake.scan(profile.name, 'features', newest.days() or wanted[-1:])}"
    devices = update_online_features(con, lake, profile.name, newest_rows)
    return FeatureReport(rows=rows, columns=schema.names, devices_online=devices)


def _threads(con: duckdb.DuckDBPyConnection) -> int:
    (threads,) = con.execute("SELECT current_setting('threads')").fetchone()
    return int(threads)


def _days(reader: pa.RecordBatchReader) -> Iterator[tuple[date, pa.Table]]:
    """(day, its rows) from a stream of batches sorted by day."""
    pieces: list[pa.RecordBatch] = []
    current = None
    for batch in reader:
        day_numbers = pc.cast(batch.column("ts"), pa.date32()).cast(pa.int32())
        cuts = pc.indices_nonzero(pc.not_equal(day_numbers[1:], day_numbers[:-1])).to_pylist()
        for lo, hi in pairwise([0, *(i + 1 for i in cuts), len(batch)]):
            if hi == lo:
                continue
            day = date(1970, 1, 1) + timedelta(days=day_numbers[lo].as_py())
            if current is not None and day != current:
                yield current, pa.Table.from_batches(pieces, schema=reader.schema)
                pieces = []
            current = day
            pieces.append(batch.slice(lo, hi - lo))
    if current is not None:
        yield current, pa.Table.from_batches(pieces, schema=reader.schema)


def _empty(schema: pa.Schema) -> pa.Table:
    # Not Schema.empty_table(): like pa.array() on Python objects, it imports pandas, which nothing here needs.
    return pa.Table.from_batches([], schema=schema)


class _NewestDays:
    """The days holding each device's newest row, over days fed in time order."""

    def __init__(self) -> None:
        self.held: list[tuple[date, pa.Array]] = []  # (day, devices whose newest row it holds)

    def add(self, day: date, rows: pa.Table) -> None:
        seen = pc.unique(rows.column("device_id"))
        kept = [(d, ids.filter(pc.invert(pc.is_in(ids, value_set=seen)))) for d, ids in self.held]
        self.held = [*((d, ids) for d, ids in kept if len(ids)), (day, seen)]

    def days(self) -> list[date]:
        return [d for d, _ in self.held]
