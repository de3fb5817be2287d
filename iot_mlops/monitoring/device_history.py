"""What the quality checks need to know of each device beyond the day: its previous day and its failures that day.

Stuck and dropouts are judged against the device's own life: a sensor constant all of yesterday is constant by
design (or was already reported), not newly stuck; a device that did not report yesterday starts its life (or
service) at its first reading today, and one that failed today is expected to fall silent after the failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd

from iot_mlops.lake import DATA_FILE, Lake, ident, parquet
from iot_mlops.profiles.schema import FleetProfile


@dataclass(frozen=True)
class DeviceHistory:
    """Yesterday's reporting devices and their constant (device, sensor) pairs; today's failure time per device."""

    known: bool  # False when yesterday's telemetry partition is missing after earlier ones: nothing can be excused
    reported_yesterday: frozenset[str] = frozenset()
    constant_yesterday: frozenset[tuple[str, str]] = frozenset()
    failed_at: dict[str, datetime] = field(default_factory=dict)

    def expected_slots(self, devices: pd.DataFrame, day: date, interval: timedelta) -> tuple[pd.Series, int]:
        """Per device (`device_id`, `first_ts`), the sampling slots of its active life on the day: from its first
        reading when it did not report yesterday, until its failure when it failed that day; and how many start."""
        midnight, full = pd.Timestamp(day), max(1, int(timedelta(days=1) / interval))
        starts = [pd.Timestamp(first).tz_localize(None).floor(interval)
                  if self.known and d not in self.reported_yesterday and pd.notna(first) else midnight
                  for d, first in zip(devices["device_id"], devices["first_ts"])]
        ends = [min(midnight + pd.Timedelta(days=1), pd.Timestamp(self.failed_at[d]).tz_localize(None).ceil(interval))
                if d in self.failed_at else midnight + pd.Timedelta(days=1) for d in devices["device_id"]]
        expected = pd.Series([max(1, int((e - b) / interval)) for b, e in zip(starts, ends)], index=devices.index)
        return expected.clip(upper=full), sum(b > midnight for b in starts)


@dataclass(frozen=True)
class DayFigures:
    """What the next day's checks need of a day: its reporting devices and their constant (device, sensor) pairs."""

    reported: frozenset[str]
    constant: frozenset[tuple[str, str]]


def device_history(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, day: date,
                   carried: dict | None = None) -> DeviceHistory:
    """Yesterday's figures (carried from checking yesterday in the same run, else one aggregate pass over its
    valid telemetry) and today's failure events, where they exist."""
    fleet, yesterday = profile.name, day - timedelta(days=1)
    failed_at = _failures(con, lake, fleet, day)
    folder = lake.partition_version(fleet, "telemetry", yesterday)
    if carried and folder in carried:
        figures = carried[folder]
        return DeviceHistory(True, figures.reported, figures.constant, failed_at)
    if not (folder / DATA_FILE).is_file():
        # The fleet's first day: every device starts its life at its first reading. A gap in the middle says nothing.
        first = not any(d < day for d in lake.partitions(fleet, "telemetry"))
        return DeviceHistory(first, failed_at=failed_at)
    names = profile.sensor_names
    distinct = ", ".join(f"count(DISTINCT {ident(s)}) AS n{i}, count({ident(s)}) AS c{i}" for i, s in enumerate(names))
    rows = con.execute(f"SELECT device_id, {distinct} FROM {parquet(folder / DATA_FILE)} GROUP BY device_id").fetchall()
    constant = {(row[0], s) for row in rows for i, s in enumerate(names) if row[2 * i + 2] > 0 and row[2 * i + 1] <= 1}
    return DeviceHistory(True, frozenset(row[0] for row in rows), frozenset(constant), failed_at)


def _failures(con: duckdb.DuckDBPyConnection, lake: Lake, fleet: str, day: date) -> dict[str, datetime]:
    events = lake.partition_file(fleet, "events", day)
    if not events.is_file():
        return {}
    found = con.execute(f"SELECT device_id, min(ts) FROM {parquet(events)} WHERE kind = 'failure' GROUP BY device_id").fetchall()
    return {device: ts for device, ts in found}
