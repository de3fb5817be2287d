"""The Parquet lake: `<root>/<fleet>/<table>/date=YYYY-MM-DD/data.parquet`, written atomically."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from iot_mlops.lake.arrow import write_partition_tables
from iot_mlops.lake.atomic import atomic_write

DATA_FILE = "data.parquet"
_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for one step; timestamps are UTC."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
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

    def partition_file(self, fleet: str, table: str, day: date) -> Path:
        return self.table_dir(fleet, table) / f"date={day.isoformat()}" / DATA_FILE

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

    def copy(tmp: Path) -> None:
        con.execute(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd)")

    return atomic_write(target, copy)


def row_count(con: duckdb.DuckDBPyConnection, file: Path) -> int:
    """Rows in a Parquet file, from its footer."""
    if not Path(file).is_file():
        return 0
    (count,) = con.execute(f"SELECT count(*) FROM read_parquet({sql_str(file)})").fetchone()
    return int(count)
