"""Stored data-quality results: one row per check and day in `<fleet>/data_quality`, and their history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from iot_mlops.lake import Lake, connect, parquet, sql_str
from iot_mlops.lake.commit import VERSION_PREFIX
from iot_mlops.monitoring.quality import CHECKS, ERROR, OK, RANK, TABLE, WARN, QualityResult, check_partition, worst
from iot_mlops.profiles.schema import FleetProfile


def write_quality(con: duckdb.DuckDBPyConnection, lake: Lake, fleet: str, day: date, results: list[QualityResult],
                  telemetry_version: str = "") -> Path:
    """One row per check in `<lake>/<fleet>/data_quality/date=D/data.parquet`, replaced atomically, with the
    name of the telemetry version checked (so the partition's checks can reuse the results)."""
    frame = pd.DataFrame(
        {
            "check": [r.check for r in results],
            "value": [r.value for r in results],
            "severity": [r.severity for r in results],
            "threshold_warn": [r.threshold_warn for r in results],
            "threshold_error": [r.threshold_error for r in results],
            "details": [json.dumps(r.details, sort_keys=True) for r in results],
        }
    )
    frame["telemetry_version"] = telemetry_version
    con.register("quality_results", frame)
    try:
        columns = '"check", value, severity, threshold_warn, threshold_error, details::JSON AS details, telemetry_version'
        return lake.write_partition(con, fleet, TABLE, day, f"SELECT DATE {sql_str(day)} AS day, {columns} FROM quality_results")
    finally:
        con.unregister("quality_results")


def stored_results(con: duckdb.DuckDBPyConnection, lake: Lake, fleet: str, day: date, telemetry_version: str) -> list[QualityResult] | None:
    """The day's stored results if they were computed on this telemetry version, else None."""
    file = lake.partition_file(fleet, TABLE, day)
    # Only a version folder's name is unique to one write of the day (a plain folder keeps its name when rewritten).
    if not telemetry_version.startswith(VERSION_PREFIX) or not file.is_file():
        return None
    frame = con.execute(f"SELECT * FROM {parquet(file)}").df()
    if "telemetry_version" not in frame or set(frame["telemetry_version"]) != {telemetry_version}:
        return None
    by_check = {row.check: row for row in frame.itertuples(index=False)}
    if set(by_check) != set(CHECKS):
        return None
    return [QualityResult(c, float(by_check[c].value), by_check[c].severity, float(by_check[c].threshold_warn),
                          float(by_check[c].threshold_error), json.loads(by_check[c].details)) for c in CHECKS]


def quality_history(lake: Lake, fleet: str) -> list[tuple[date, str]]:
    """(day, worst severity) of every stored data_quality partition, oldest first."""
    scan = lake.scan(fleet, TABLE)
    if scan is None:
        return []
    with connect() as con:
        rows = con.execute(
            f"SELECT day, max(CASE severity WHEN 'ERROR' THEN 2 WHEN 'WARN' THEN 1 ELSE 0 END) FROM {scan} GROUP BY day ORDER BY day"
        ).fetchall()
    names = {rank: name for name, rank in RANK.items()}
    return [(d, names[r]) for d, r in rows]


@dataclass
class QualityRun:
    """The checks of each day of a run, written to `<fleet>/data_quality`."""

    per_day: dict[date, list[QualityResult]]
    lake_path: Path

    @property
    def metadata(self) -> dict[str, object]:
        """Counts by severity, each day's values; each check's value as a number when the run is one day (plots)."""
        flat = [r for results in self.per_day.values() for r in results]
        metadata: dict[str, object] = {
            "checks_ok": sum(r.severity == OK for r in flat),
            "checks_warn": sum(r.severity == WARN for r in flat),
            "checks_error": sum(r.severity == ERROR for r in flat),
            "worst_severity": worst([r.severity for r in flat]),
            "per_day": {str(d): {r.check: [r.value, r.severity] for r in rs} for d, rs in self.per_day.items()},
            "lake_path": self.lake_path,
        }
        if len(self.per_day) == 1:  # a range run attaches the same metadata to every partition
            (results,) = self.per_day.values()
            metadata["dagster/row_count"] = len(results)
            metadata.update({r.check: float(r.value) for r in results})
        return metadata

    @property
    def markdown(self) -> dict[str, str]:
        """A table of every day's checks."""
        lines = ["| day | check | value | severity | warn | error |", "|---|---|---|---|---|---|"]
        for day, results in self.per_day.items():
            lines += [f"| {day} | {r.check} | {r.value:.4%} | {r.severity} | {r.threshold_warn:g} | {r.threshold_error:g} |"
                      for r in results]
        return {"results": "\n".join(lines)}


def check_days(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> QualityRun:
    """Run the checks on each day's current telemetry version and write each day's results."""
    per_day, carried = {}, {}
    for day in days:
        folder = lake.partition_version(profile.name, "telemetry", day)
        per_day[day] = check_partition(con, lake, profile, day, folder, carried)
        write_quality(con, lake, profile.name, day, per_day[day], folder.name)
    return QualityRun(per_day, lake.table_dir(profile.name, TABLE))
