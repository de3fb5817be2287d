"""Stage source rows into a checked table, then split them into lake partitions and quarantine."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb

from iot_mlops.ingestion.rules import Layer, layered, reason_case, reason_category
from iot_mlops.ingestion.sources import SourceFile, check_columns, file_columns
from iot_mlops.lake import DATA_FILE, QUARANTINE_FILE, Lake, ident, row_count, sql_str

# Given a file and its column types: the prepared column layers, the standardized SELECT list and the rules.
Builder = Callable[[SourceFile, dict[str, str]], tuple[list[Layer], list[str], list[tuple[str, str]]]]


@dataclass
class PartitionCounts:
    """What happened to one partition's rows; read == valid + quarantined when nothing is lost."""

    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_detail: dict[str, int] = field(default_factory=dict)

    @property
    def accounted_for(self) -> bool:
        return self.rows_read == self.rows_valid + self.rows_quarantined


@dataclass
class IngestReport:
    """Per-day counts of one ingestion, plus the columns that were ignored per file."""

    table: str
    days: dict[date, PartitionCounts] = field(default_factory=dict)
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)

    def total(self) -> PartitionCounts:
        total = PartitionCounts()
        for counts in self.days.values():
            total.rows_read += counts.rows_read
            total.rows_valid += counts.rows_valid
            total.rows_quarantined += counts.rows_quarantined
            for source, target in ((counts.by_reason, total.by_reason), (counts.by_detail, total.by_detail)):
                for key, value in source.items():
                    target[key] = target.get(key, 0) + value
        return total


def day_expr(file: SourceFile, ts: str, first_day: date, last_day: date | None, limit: datetime) -> str:
    """The partition a row belongs to: its file's day, else its timestamp's day.

    Rows of a whole-table source with no usable timestamp, or from before the first partition,
    belong to the first partition; rows after a fixed last partition belong to it, and rows later
    than `limit` (the future) to the fixed last partition or else the first: places that do not
    move as time passes or data arrives, so every source row lands in one place, once.
    """
    if file.day is not None:
        return f"DATE {sql_str(file.day)}"
    first = f"DATE {sql_str(first_day)}"
    last = f"DATE {sql_str(last_day)}" if last_day else first
    after = f" WHEN {ts} >= {last} + INTERVAL 1 DAY THEN {last}" if last_day else ""
    return f"CASE WHEN {ts} IS NULL OR {ts} < {first} THEN {first} WHEN {ts} > TIMESTAMP {sql_str(limit)} THEN {last}{after} ELSE CAST({ts} AS DATE) END"


def day_batches(files: list[SourceFile], days: list[date]) -> list[tuple[list[SourceFile], list[date]]]:
    """Daily files a day at a time, so a range run holds one day's rows, not all of them; else one batch."""
    # Staging the 23 days of the demo's history at once held 3.3 GB; a day's rows are only ever checked together.
    if not files or any(f.day is None for f in files):
        return [(files, days)]
    return [([f for f in files if f.day == day], [day]) for day in days]


def stage(
    con: duckdb.DuckDBPyConnection,
    files: list[SourceFile],
    required: list[str],
    build: Builder,
    days: list[date],
    key: list[str],
    report: IngestReport,
    *,
    first: date,
) -> None:
    """Create TEMP TABLE checked (source_file, source_row, day, reason, rejected_line, standardized columns).

    `first` is the first partition: whole-table rows the CSV reader rejects belong to it.
    """
    wanted = ", ".join(f"DATE {sql_str(d)}" for d in days)
    parts = []
    for file in files:
        columns, reader = file_columns(con, file), file.reader()
        if columns is None:
            # A zero-byte file has no rows; stage it as an empty typed relation so the columns exist.
            columns = dict.fromkeys(required, "VARCHAR")
            reader = "(SELECT " + ", ".join(f"NULL::VARCHAR AS {ident(c)}" for c in required) + " WHERE false)"
        extra = check_columns(file, columns, required)
        if extra:
            report.ignored_columns[str(file.path)] = extra
        layers, select, rules = build(file, columns)
        parts.append(
            f"SELECT * FROM (SELECT {sql_str(file.path)} AS source_file, row_number() OVER () AS source_row,"
            f" {', '.join(select)}, {reason_case(rules)} AS reason, NULL::VARCHAR AS rejected_line"
            f" FROM {layered(reader, layers)} AS src) WHERE day IN ({wanted})"
        )
    if not parts:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE checked AS SELECT NULL::VARCHAR AS source_file, NULL::BIGINT AS source_row,"
            " NULL::DATE AS day, NULL::VARCHAR AS reason, NULL::VARCHAR AS rejected_line WHERE false"
        )
        return
    # The CSV reader appends the rows it rejects to these tables; only this scan's must count.
    con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")
    con.execute("CREATE OR REPLACE TEMP TABLE checked AS " + " UNION ALL BY NAME ".join(parts))
    add_rejected(con, files, days, first)
    mark_duplicates(con, key)


# DuckDB's CSV error types -> quarantine reasons; any other rejected line is unreadable_row.
REJECTED = {"INVALID ENCODING": "invalid_encoding", "TOO MANY COLUMNS": "extra_field"}


def add_rejected(con: duckdb.DuckDBPyConnection, files: list[SourceFile], days: list[date], first: date) -> None:
    """Add the CSV lines the reader rejected to `checked`, quarantined, numbered after the file's readable rows."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'reject_errors'").fetchone()[0]:
        return
    by_file = {str(f.path): f for f in files}
    rejected = con.execute(
        """SELECT DISTINCT s.file_path, e.line, e.error_type, e.csv_line
           FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id) ORDER BY s.file_path, e.line"""
    ).fetchall()
    rows, readable = [], {}
    for path, line, error, text in rejected:
        file = by_file.get(path)
        if file is None or (file.day or first) not in days:
            continue
        if path not in readable:
            # Counted as the quarantine query reads raw records (all columns), so numbers match.
            readable[path] = con.execute(f"SELECT count(src) FROM {file.reader()} AS src").fetchone()[0]
        readable[path] += 1
        rows.append((path, readable[path], file.day or first, REJECTED.get(error, "unreadable_row"), json.dumps({"line": line, "text": text})))
    if rows:
        con.executemany("INSERT INTO checked BY NAME SELECT ? AS source_file, ? AS source_row, ? AS day, ? AS reason, ? AS rejected_line", rows)


def mark_duplicates(con: duckdb.DuckDBPyConnection, key: list[str]) -> None:
    """Of otherwise valid rows sharing a key, keep the first seen; the rest are duplicates."""
    cols = ", ".join(ident(k) for k in key)
    con.execute(
        f"""
        UPDATE checked SET reason = 'duplicate'
        WHERE (source_file, source_row) IN (
            SELECT source_file, source_row FROM (
                SELECT source_file, source_row,
                       row_number() OVER (PARTITION BY {cols} ORDER BY source_file, source_row) AS seen
                FROM checked
                WHERE reason IS NULL AND ({cols}) IN (
                    SELECT ({cols}) FROM checked WHERE reason IS NULL GROUP BY ALL HAVING count(*) > 1)
            ) WHERE seen > 1)
        """
    )


def quarantine_query(files: list[SourceFile]) -> str:
    """Quarantined rows with their reason and the raw record as JSON."""
    parts = [
        f"""SELECT c.day, c.reason, c.source_file, c.source_row, to_json(r.raw) AS record
            FROM checked c JOIN (SELECT row_number() OVER () AS raw_row, src AS raw FROM {f.reader()} AS src) r
              ON c.source_row = r.raw_row
            WHERE c.source_file = {sql_str(f.path)} AND c.reason IS NOT NULL AND c.rejected_line IS NULL"""
        for f in files
        if f.path.stat().st_size > 0
    ]
    if parts:
        # A rejected line's record is its line number and text, as the reader saw it.
        parts.append("SELECT day, reason, source_file, source_row, CAST(rejected_line AS JSON) FROM checked WHERE rejected_line IS NOT NULL")
    if not parts:
        return "SELECT NULL::DATE AS day, NULL::VARCHAR AS reason, NULL::VARCHAR AS source_file, NULL::BIGINT AS source_row, NULL::JSON AS record WHERE false"
    return " UNION ALL ".join(parts) + " ORDER BY source_file, source_row"


def staged_counts(con: duckdb.DuckDBPyConnection, days: list[date]) -> dict[date, PartitionCounts]:
    """Rows read and quarantined by reason, per day of the checked table (one scan for all days)."""
    counts = {day: PartitionCounts() for day in days}
    rows = con.execute(f"SELECT day, reason, {reason_category()}, count(*) FROM checked GROUP BY ALL ORDER BY day, reason NULLS FIRST").fetchall()
    for day, detail, category, n in rows:
        day_counts = counts.setdefault(day, PartitionCounts())
        day_counts.rows_read += n
        if detail is not None:
            day_counts.by_detail[detail] = n
            day_counts.by_reason[category] = day_counts.by_reason.get(category, 0) + n
    return counts


def write_days(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    fleet: str,
    table: str,
    files: list[SourceFile],
    days: list[date],
    valid_columns: list[str],
    order: list[str],
    report: IngestReport,
) -> None:
    """Write each day's valid rows and quarantine, published together, and count what was written."""
    cols = ", ".join(ident(c) for c in valid_columns)
    order_by = ", ".join(ident(c) for c in order)
    # Raw records are read back once for the whole run, not once per day.
    con.execute(f"CREATE OR REPLACE TEMP TABLE quarantined AS {quarantine_query(files)}")
    staged = staged_counts(con, days)
    for day in days:
        counts = staged[day]
        folder = lake.write_partition_files(con, fleet, table, day, {
            DATA_FILE: f"SELECT {cols} FROM checked WHERE day = DATE {sql_str(day)} AND reason IS NULL ORDER BY {order_by}",
            QUARANTINE_FILE: f"SELECT * FROM quarantined WHERE day = DATE {sql_str(day)} ORDER BY source_file, source_row",
        })  # fmt: skip
        counts.rows_valid = row_count(con, folder / DATA_FILE)
        counts.rows_quarantined = row_count(con, folder / QUARANTINE_FILE)
        report.days[day] = counts


def outside_day(day: str, ts: str) -> str:
    """Condition: a timestamp falls outside its row's partition day."""
    return f"({ts} < {day} OR {ts} >= {day} + INTERVAL 1 DAY)"
