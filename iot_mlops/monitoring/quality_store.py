"""Stored data-quality results: one row per check and day in `<fleet>/data_quality`, and their history."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from iot_mlops.lake import Lake, connect, parquet, sql_str
from iot_mlops.lake.commit import VERSION_PREFIX
from iot_mlops.monitoring.quality import CHECKS, RANK, TABLE, QualityResult


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
