"""The Parquet lake: `<root>/<fleet>/<table>/date=YYYY-MM-DD/data.parquet`, written atomically.

A partition with several files (ingestion: `data.parquet` and `quarantine.parquet`) is a link
to a version folder, switched as a whole (see `commit`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from iot_mlops.lake.arrow import write_partition_tables
from iot_mlops.lake.atomic import atomic_write
from iot_mlops.lake.commit import commit_files, current

DATA_FILE = "data.parquet"
QUARANTINE_FILE = "quarantine.parquet"
_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for one step; timestamps are UTC; no progress bar in logs."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def sql_str(value: object) -> str:
    """Quote a value as a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """Quote a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class Lake:
    """Paths and atomic reads/writes of partitioned Parquet tables."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def table_dir(self, fleet: str, table: str) -> Path:
        return self.root / fleet / table

    def partition_dir(self, fleet: str, table: str, day: date) -> Path:
        """`<table>/date=D`: a folder, or the link to the version folder holding the day's files."""
        return self.table_dir(fleet, table) / f"date={day.isoformat()}"

    def partition_file(self, fleet: str, table: str, day: date) -> Path:
        return self.partition_dir(fleet, table, day) / DATA_FILE

    def partition_version(self, fleet: str, table: str, day: date) -> Path:
        """The folder of the day's files as they are now, its link read once: files read from it belong together."""
        return current(self.partition_dir(fleet, table, day))

    def table_file(self, fleet: str, table: str) -> Path:
        """The single file of an unpartitioned table."""
        return self.table_dir(fleet, table) / DATA_FILE

    def partitions(self, fleet: str, table: str) -> list[date]:
        """Days that have a written partition, in order."""
        folder = self.table_dir(fleet, table)
        if not folder.is_dir():
            return []
        days = []
        for child in folder.iterdir():
            match = _PARTITION.match(child.name)
            if match and (child / DATA_FILE).is_file():
                days.append(date.fromisoformat(match.group(1)))
        return sorted(days)

    def files(self, fleet: str, table: str, days: Iterable[date] | None = None) -> list[Path]:
        """Existing partition files, for the given days or all of them."""
        wanted = self.partitions(fleet, table) if days is None else days
        return [f for f in (self.partition_file(fleet, table, d) for d in wanted) if f.is_file()]

    def scan(self, fleet: str, table: str, days: Iterable[date] | None = None) -> str | None:
        """A `read_parquet(...)` SQL source over the partitions, or None when there are none."""
        files = self.files(fleet, table, days)
        if not files:
            return None
        listed = ", ".join(sql_str(f) for f in files)
        return f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"

    def write_partition_files(
        self, con: duckdb.DuckDBPyConnection, fleet: str, table: str, day: date, queries: Mapping[str, str]
    ) -> Path:
        """Write each query to its file name (e.g. data and quarantine) and publish them together; returns their folder."""
        return commit_files(self.partition_dir(fleet, table, day), {name: _copy(con, q) for name, q in queries.items()})

    def write_table_files(self, con: duckdb.DuckDBPyConnection, fleet: str, table: str, queries: Mapping[str, str]) -> Path:
        """Write the files of an unpartitioned table and publish them together; returns their folder."""
        return commit_files(self.table_dir(fleet, table), {name: _copy(con, q) for name, q in queries.items()})

    def write_partition(self, con: duckdb.DuckDBPyConnection, fleet: str, table: str, day: date, query: str) -> Path:
        """Write a query's rows as one partition, replacing the previous one atomically."""
        return write_query(con, query, self.partition_file(fleet, table, day))

    def write_arrow_partitions(
        self, fleet: str, table: str, parts: Iterable[tuple[date, pa.Table]], workers: int | None = None
    ) -> dict[date, Path]:
        """Write Arrow tables as partitions, several at a time, each replaced atomically.

        `parts` yields (day, rows of that day) and is read lazily, so days can stream from a
        query; a file's bytes depend only on its rows (see `write_parquet`).
        """
        return write_partition_tables(parts, lambda day: self.partition_file(fleet, table, day), workers)

    def write_table(self, con: duckdb.DuckDBPyConnection, fleet: str, table: str, query: str) -> Path:
        """Write a query's rows as an unpartitioned table, replacing it atomically."""
        return write_query(con, query, self.table_file(fleet, table))


def write_query(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> Path:
    """COPY a query to Parquet at `target`, atomically."""
    return atomic_write(target, _copy(con, query))


def _copy(con: duckdb.DuckDBPyConnection, query: str) -> Callable[[Path], None]:
    """A writer COPYing the query's rows to the Parquet file it is given."""
    return lambda path: con.execute(f"COPY ({query}) TO {sql_str(path)} (FORMAT parquet, COMPRESSION zstd)")


def parquet(path: Path | str) -> str:
    """SQL reading one Parquet file as it is: DuckDB would otherwise add a column for each `key=value`
    folder in its path (a partition's `date=...`, or a version folder named after it)."""
    return f"read_parquet({sql_str(path)}, hive_partitioning = false)"


def row_count(con: duckdb.DuckDBPyConnection, file: Path) -> int:
    """Rows in a Parquet file, from its footer."""
    if not Path(file).is_file():
        return 0
    (count,) = con.execute(f"SELECT count(*) FROM {parquet(file)}").fetchone()
    return int(count)
