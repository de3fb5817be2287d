"""Open source tables (Parquet or CSV, one file or one file per day) as DuckDB relations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from iot_mlops.lake import sql_str
from iot_mlops.profiles.schema import TableSpec


class SourceError(ValueError):
    """A source file that cannot be ingested at all (missing file or required column)."""


@dataclass(frozen=True)
class SourceFile:
    """One source file and the partition day its rows belong to (None: decided by timestamp)."""

    path: Path
    day: date | None

    def reader(self) -> str:
        """DuckDB table function; CSV is read as text so that bad values reach validation."""
        suffix = self.path.suffix.lower()
        if suffix == ".parquet":
            return f"read_parquet({sql_str(self.path)})"
        if suffix in {".csv", ".gz", ".txt"}:
            # Without padding, one short row makes the sniffer read the file as a single column.
            return f"read_csv({sql_str(self.path)}, all_varchar = true, header = true, null_padding = true)"
        raise SourceError(f"{self.path}: unsupported file type {suffix!r} (use .parquet or .csv)")


def source_files(folder: Path, spec: TableSpec, days: list[date]) -> list[SourceFile]:
    """The files holding these days: one per day for `{date}` paths, else the single table file."""
    if spec.is_daily:
        files = [SourceFile(folder / spec.path.format(date=d.isoformat()), d) for d in days]
    else:
        files = [SourceFile(folder / spec.path, None)]
    for file in files:
        if not file.path.is_file():
            raise SourceError(f"{file.path}: source file not found")
    return files


def file_columns(con: duckdb.DuckDBPyConnection, file: SourceFile) -> dict[str, str] | None:
    """Column name -> DuckDB type of a file; None for an empty file with no header."""
    if file.path.stat().st_size == 0:
        return None
    rows = con.execute(f"DESCRIBE SELECT * FROM {file.reader()}").fetchall()
    return {name: dtype for name, dtype, *_ in rows}


def check_columns(file: SourceFile, columns: dict[str, str], required: list[str]) -> list[str]:
    """Fail on a missing required column; return the extra columns that will be ignored."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise SourceError(f"{file.path}: required column(s) missing: {', '.join(missing)}")
    return sorted(set(columns) - set(required))
