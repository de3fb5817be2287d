"""Compute the features of a run's days and check what was written: row counts, duplicate keys and a preview."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from iot_mlops.features.compute import FeatureReport, compute_features
from iot_mlops.lake import Lake
from iot_mlops.profiles.schema import FleetProfile


@dataclass
class FeatureRun:
    """The days one run computed, with the duplicate (device, time) keys found in what it wrote."""

    report: FeatureReport
    days: list[date]
    duplicates: int
    preview: str | None  # the newest rows, one column per row, as text
    lake_path: Path

    @property
    def metadata(self) -> dict[str, object]:
        """Row counts, feature names, devices online and the lake path, as plain values."""
        rows = sum(self.report.rows.values())
        return {
            **({"dagster/row_count": rows} if len(self.days) == 1 else {}),  # a range run's total is no partition's count
            "rows": rows,
            "feature_count": len(self.report.columns) - 2,
            "features": self.report.columns[2:],
            "rows_per_day": {str(d): n for d, n in self.report.rows.items()},
            "devices_online": self.report.devices_online,
            "lake_path": self.lake_path,
        }

    @property
    def markdown(self) -> dict[str, str]:
        """The preview of the newest rows, when any were written."""
        return {} if self.preview is None else {"preview": f"```\n{self.preview}\n```"}


def features_for_days(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> FeatureRun:
    """Compute and store the features of `days`, then count duplicate keys among the rows stored for them."""
    fleet = profile.name
    report = compute_features(con, lake, profile, days)
    written = lake.scan(fleet, "features", days)
    (duplicates,) = con.execute(
        f"SELECT count(*) FROM (SELECT device_id, ts FROM {written} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone() if written else (0,)
    preview = con.execute(f"SELECT * FROM {written} ORDER BY ts DESC, device_id LIMIT 5").df() if written else None
    return FeatureRun(report, days, duplicates, None if preview is None else preview.T.to_string(), lake.table_dir(fleet, "features"))
