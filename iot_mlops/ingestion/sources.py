"""Open source tables (Parquet or CSV, one file or one file per day, plus streamed parts) as DuckDB relations."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import duckdb

from iot_mlops.lake import connect, parquet, sql_str
from iot_mlops.profiles.schema import TableSpec


class SourceError(ValueError):
    """A source file that cannot be ingested at all (missing file or required column)."""


@dataclass(frozen=True)
class SourceFile:
    """One source file and the partition day its rows belong to (None: decided by timestamp)."""

    path: Path
    day: date | None

    def reader(self) -> str:
        """DuckDB table function; CSV is read as text so that bad values reach validation.

        Files are read as they are: a `date=...` folder never replaces a column of the file.
        """
        suffix = self.path.suffix.lower()
        if suffix == ".parquet":
            return f"{parquet(self.path)}"
        if suffix in {".csv", ".gz", ".txt"}:
            stat = self.path.stat()
            return f"read_csv({sql_str(self.path)}, {_csv_options(str(self.path), stat.st_mtime_ns, stat.st_size)})"
        raise SourceError(f"{self.path}: unsupported file type {suffix!r} (use .parquet or .csv)")


@lru_cache(maxsize=4096)
def _csv_options(path: str, mtime_ns: int, size: int) -> str:
    """read_csv options pinning the file's dialect and header columns, so that a malformed row
    (a bad byte, an extra field) is rejected on its own instead of changing how the whole file is read.

    Short rows are padded with NULLs (they fail validation as missing values); rejected rows are
    stored in DuckDB's reject_errors table; quoted line breaks need the serial reader.
    """
    options = "all_varchar = true, header = true, null_padding = true, parallel = false, store_rejects = true, hive_partitioning = false"
    if size == 0:
        return options
    with connect() as con:
        found = con.execute(
            f"SELECT Delimiter, Quote, Escape, Columns FROM sniff_csv({sql_str(path)}, header = true, null_padding = false,"
            " ignore_errors = true, all_varchar = true)"
        ).fetchone()
    delim, quote, escape, columns = ("" if v == "(empty)" else v for v in found)
    names = ", ".join(f"{sql_str(c['name'])}: 'VARCHAR'" for c in columns)
    return f"auto_detect = false, delim = {sql_str(delim)}, quote = {sql_str(quote)}, escape = {sql_str(escape)}, columns = {{{names}}}, {options}"


# A streaming writer appends a day's rows as parts beside the day's file: `<stem>.part-<first>-<last>.parquet`.
PART = re.compile(r"\.part-(\d+)-(\d+)\.parquet$")


def part_range(path: Path) -> tuple[int, int]:
    """The (first, last) sequence numbers a part covers; a merged part covers several."""
    match = PART.search(path.name)
    if not match:
        raise ValueError(f"{path}: not a landing part file")
    return int(match.group(1)), int(match.group(2))


def landing_parts(day_file: Path, live: bool = True) -> list[Path]:
    """Part files of a day's file, by sequence; `live` drops parts a merged part already covers."""
    pattern = glob.escape(str(day_file.parent / day_file.stem)) + ".part-*.parquet"
    ranges = {Path(p): part_range(Path(p)) for p in glob.glob(pattern) if PART.search(p)}
    if live:
        # A merge writes its part before removing the ones it covers; readers skip those meanwhile.
        ranges = {p: r for p, r in ranges.items() if not any(o != r and o[0] <= r[0] and r[1] <= o[1] for o in ranges.values())}
    return sorted(ranges, key=ranges.__getitem__)


def day_files(folder: Path, spec: TableSpec, day: date) -> list[Path]:
    """A daily table's files for one day: its file (if any), then its parts."""
    main = folder / spec.path.format(date=day.isoformat())
    return ([main] if main.is_file() else []) + landing_parts(main)


def source_files(folder: Path, spec: TableSpec, days: list[date]) -> list[SourceFile]:
    """The files holding these days: per day its file and parts for `{date}` paths, else the single table file."""
    if not spec.is_daily:
        file = SourceFile(folder / spec.path, None)
        if not file.path.is_file():
            raise SourceError(f"{file.path}: source file not found")
        return [file]
    files = []
    for day in days:
        found = day_files(folder, spec, day)
        if not found:
            raise SourceError(f"{folder / spec.path.format(date=day.isoformat())}: source file not found")
        files += [SourceFile(path, day) for path in found]
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
