"""Online features: the latest feature row per device, for serving."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from iot_mlops.lake import Lake, connect, parquet
from iot_mlops.settings import get_settings

TABLE = "online_features"


@contextmanager
def _locked(folder: Path):
    """Serialize read-merge-write of the online table across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_online_features(con: duckdb.DuckDBPyConnection, lake: Lake, fleet: str, new_rows: str) -> int:
    """Merge new feature rows into the online table, keeping each device's newest row."""
    target = lake.table_file(fleet, TABLE)
    with _locked(target.parent):
        sources = [f"SELECT *, 1 AS fresh FROM ({new_rows})"]
        if target.is_file():
            sources.append(f"SELECT *, 0 AS fresh FROM {parquet(target)}")
        merged = " UNION ALL BY NAME ".join(sources)
        # On equal timestamps the recomputed row wins, so re-running a partition refreshes it.
        latest = (
            f"SELECT * EXCLUDE (newest, fresh) FROM (SELECT *, row_number() OVER (PARTITION BY device_id ORDER BY ts DESC, fresh DESC) AS newest "
            f"FROM ({merged})) WHERE newest = 1 ORDER BY device_id"
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE online_merged AS {latest}")
        lake.write_table(con, fleet, TABLE, "SELECT * FROM online_merged")
        (devices,) = con.execute("SELECT count(*) FROM online_merged").fetchone()
    return int(devices)


def get_device_features(fleet: str, device_id: str, lake_root: Path | None = None) -> dict[str, Any] | None:
    """The newest feature row of a device (with its timestamp `ts`), or None if it has none."""
    target = Lake(lake_root or get_settings().lake).table_file(fleet, TABLE)
    if not target.is_file():
        return None
    with connect(threads=1) as con:
        result = con.execute(f"SELECT * FROM {parquet(target)} WHERE device_id = ?", [str(device_id)])
        row = result.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in result.description], row))
