"""Ingest a fleet's devices, telemetry and events into the lake, quarantining invalid rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from iot_mlops.ingestion.rules import (
    Layer,
    NumericColumn,
    device_expr,
    device_rules,
    number_expr,
    numeric_reasons,
    text_expr,
    timestamp_layers,
    timestamp_rules,
)
from iot_mlops.ingestion.sources import SourceError, SourceFile, source_files
from iot_mlops.ingestion.staging import (
    IngestReport,
    day_batches,
    day_expr,
    outside_day,
    quarantine_query,
    stage,
    staged_counts,
    write_days,
)
from iot_mlops.lake import DATA_FILE, QUARANTINE_FILE, Lake, ident, parquet, row_count, sql_str
from iot_mlops.partitions import fixed_end, future_limit
from iot_mlops.profiles.schema import FleetProfile

SOURCE_COLUMNS = {"source_file", "source_row", "day", "reason", "rejected_line"}


def _known_devices(lake: Lake, fleet: str) -> str:
    devices = lake.table_file(fleet, "devices")
    if not devices.is_file():
        raise SourceError(f"{fleet}: no devices table in the lake yet; materialize {fleet}/devices first")
    return f"(SELECT device_id FROM {parquet(devices)})"


def _time_rules(file: SourceFile, last: date | None) -> list[tuple[str, str]]:
    """Whole-table rows after a fixed last partition land in it, quarantined."""
    if file.day is not None or last is None:
        return []
    return [(f"__ts >= DATE {sql_str(last)} + INTERVAL 1 DAY", "after_partition_end")]


def ingest_telemetry(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, folder: Path, days: list[date]) -> IngestReport:
    """Validate the days' telemetry: valid rows to `telemetry`, the rest to its quarantine file."""
    spec = profile.source.telemetry
    dev_col = spec.device_column or profile.device_column
    ts_col = spec.timestamp_column or profile.timestamp_column
    sensors = [NumericColumn(s.name, s.source_column, s.min, s.max) for s in profile.sensors]
    known = _known_devices(lake, profile.name)
    first = profile.partitions.start
    limit, last = future_limit(profile), fixed_end(profile)

    def build(file: SourceFile, types: dict[str, str]) -> tuple[list[Layer], list[str], list[tuple[str, str]]]:
        device, ts = device_expr(dev_col), "__ts"
        day = day_expr(file, ts, first, last, limit)
        select = [f"{device} AS device_id", f"{ts} AS ts", f"{day} AS day"]
        select += [f"{number_expr(s.source, types[s.source])} AS {ident(s.name)}" for s in sensors]
        rules = [
            *device_rules(dev_col),
            (f"{text_expr(ts_col)} IS NULL", "missing_value:timestamp"),
            *timestamp_rules(ts, limit),
            *_time_rules(file, last),
            (outside_day(day, ts), "timestamp_outside_partition"),
            (f"{device} NOT IN {known}", "unknown_device"),
        ]
        for sensor in sensors:
            rules += numeric_reasons(sensor, types[sensor.source])
        return timestamp_layers(ts_col, types[ts_col], profile.ambiguous_local_time), select, rules

    report = IngestReport("telemetry")
    required = [dev_col, ts_col, *(s.source for s in sensors)]
    columns = ["device_id", "ts", *(s.name for s in sensors)]
    for batch_files, batch_days in day_batches(source_files(folder, spec, days), days):
        stage(con, batch_files, required, build, batch_days, ["device_id", "ts"], report, first=first)
        write_days(con, lake, profile.name, "telemetry", batch_files, batch_days, columns, ["device_id", "ts"], report)
    return report


def ingest_events(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, folder: Path, days: list[date]) -> IngestReport:
    """Validate failures, maintenance and errors into one `events` table (kind, value).

    The first partition also holds the history from before it (e.g. past maintenance),
    which features such as hours-since-maintenance need.
    """
    known = _known_devices(lake, profile.name)
    first = profile.partitions.start
    report = IngestReport("events")
    all_files: list[SourceFile] = []
    limit, last = future_limit(profile), fixed_end(profile)
    if not profile.source.events:  # no event tables: empty partitions, which features and labels read as no events
        con.execute(
            "CREATE OR REPLACE TEMP TABLE all_events (source_file VARCHAR, source_row BIGINT, device_id VARCHAR, ts TIMESTAMP,"
            " day DATE, kind VARCHAR, value VARCHAR, reason VARCHAR, rejected_line VARCHAR)"
        )
    for spec in profile.source.events:
        dev_col = spec.device_column or profile.device_column
        ts_col = spec.timestamp_column or profile.timestamp_column
        allowed = profile.error_codes if spec.kind == "error" else profile.components
        unknown = "unknown_error_code" if spec.kind == "error" else "unknown_component"

        def build(file: SourceFile, types: dict[str, str], spec=spec, dev_col=dev_col, ts_col=ts_col, allowed=allowed, unknown=unknown):
            device, ts, value = device_expr(dev_col), "__ts", text_expr(spec.value_column)
            day = day_expr(file, ts, first, last, limit)
            history = f"({day} = DATE {sql_str(first)} AND {ts} < DATE {sql_str(first)})"
            select = [f"{device} AS device_id", f"{ts} AS ts", f"{day} AS day", f"{sql_str(spec.kind)} AS kind", f"{value} AS value"]
            listed = ", ".join(sql_str(a) for a in allowed)
            rules = [
                *device_rules(dev_col),
                (f"{text_expr(ts_col)} IS NULL", "missing_value:timestamp"),
                *timestamp_rules(ts, limit),
                *_time_rules(file, last),
                (f"{outside_day(day, ts)} AND NOT {history}", "timestamp_outside_partition"),
                (f"{device} NOT IN {known}", "unknown_device"),
                (f"{value} IS NULL", f"missing_value:{spec.value_column}"),
            ]
            if allowed:
                rules.append((f"{value} NOT IN ({listed})", f"{unknown}"))
            return timestamp_layers(ts_col, types[ts_col], profile.ambiguous_local_time), select, rules

        files = source_files(folder, spec, days)
        part = IngestReport("events")
        stage(con, files, [dev_col, ts_col, spec.value_column], build, days, ["device_id", "ts", "kind", "value"], part, first=first)
        con.execute("CREATE TEMP TABLE IF NOT EXISTS all_events AS SELECT * FROM checked WHERE false")
        con.execute("INSERT INTO all_events BY NAME SELECT * FROM checked")
        report.ignored_columns.update(part.ignored_columns)
        all_files += files
    con.execute("CREATE OR REPLACE TEMP TABLE checked AS SELECT * FROM all_events")
    con.execute("DROP TABLE all_events")
    write_days(con, lake, profile.name, "events", all_files, days, ["device_id", "ts", "kind", "value"], ["ts", "device_id", "kind", "value"], report)
    return report


def ingest_devices(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, folder: Path) -> IngestReport:
    """Validate static device attributes into the unpartitioned `devices` table."""
    spec = profile.source.devices
    dev_col = spec.device_column or profile.device_column
    numeric = [NumericColumn(a.name, a.source_column, a.min, a.max) for a in spec.attributes if a.kind == "numeric"]
    categorical = [a for a in spec.attributes if a.kind == "categorical"]
    file = SourceFile(folder / spec.path, None)
    if not file.path.is_file():
        raise SourceError(f"{file.path}: source file not found")

    def build(file: SourceFile, types: dict[str, str]) -> tuple[list[Layer], list[str], list[tuple[str, str]]]:
        device = device_expr(dev_col)
        select = [f"{device} AS device_id", f"DATE {sql_str(profile.partitions.start)} AS day"]
        select += [f"{text_expr(a.source_column)} AS {ident(a.name)}" for a in categorical]
        select += [f"{number_expr(a.source, types[a.source])} AS {ident(a.name)}" for a in numeric]
        rules = device_rules(dev_col)
        rules += [(f"{text_expr(a.source_column)} IS NULL", f"missing_value:{a.name}") for a in categorical]
        for attribute in numeric:
            rules += numeric_reasons(attribute, types[attribute.source])
        return [], select, rules

    report = IngestReport("devices")
    required = [dev_col, *(a.source_column for a in spec.attributes)]
    stage(con, [file], required, build, [profile.partitions.start], ["device_id"], report, first=profile.partitions.start)
    columns = ["device_id", *(a.name for a in categorical), *(a.name for a in numeric)]
    cols = ", ".join(ident(c) for c in columns)
    written = lake.write_table_files(con, profile.name, "devices", {
        DATA_FILE: f"SELECT {cols} FROM checked WHERE reason IS NULL ORDER BY device_id",
        QUARANTINE_FILE: quarantine_query([file]),
    })  # fmt: skip
    counts = staged_counts(con, [profile.partitions.start])[profile.partitions.start]
    counts.rows_valid = row_count(con, written / DATA_FILE)
    counts.rows_quarantined = row_count(con, written / QUARANTINE_FILE)
    report.days[profile.partitions.start] = counts
    return report
