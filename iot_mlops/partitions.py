"""Daily partitions of each fleet, from its profile (and, for `end: auto`, from its data)."""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from iot_mlops.lake import connect, ident, sql_str
from iot_mlops.profiles import FleetProfile, source_folder
from iot_mlops.settings import get_settings

log = logging.getLogger(__name__)


def last_source_day(profile: FleetProfile, folder: Path) -> date | None:
    """The last day the fleet's telemetry covers, or None when the source cannot be read."""
    spec = profile.source.telemetry
    if spec.is_daily:
        # The day is in the path before any file name, so MQTT parts beside a day's file count too.
        dated = re.compile(re.escape(spec.path.split("{date}")[0]) + r"(\d{4}-\d{2}-\d{2})")
        pattern = Path(spec.path.format(date="*"))
        files = [*folder.glob(str(pattern)), *folder.glob(str(pattern.with_name(f"{pattern.stem}.part-*{pattern.suffix}")))]
        matches = (dated.match(p.relative_to(folder).as_posix()) for p in files)
        return max((d for d in (_iso_day(m.group(1)) for m in matches if m) if d), default=None)
    file = folder / spec.path
    if not file.is_file():
        return None
    reader = f"read_parquet({sql_str(file)})" if file.suffix == ".parquet" else f"read_csv({sql_str(file)})"
    ts = ident(spec.timestamp_column or profile.timestamp_column)
    with connect() as con:
        (last,) = con.execute(f"SELECT max(TRY_CAST({ts} AS TIMESTAMP)) FROM {reader}").fetchone()
    return last.date() if last else None


def _iso_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def daily_partitions(profile: FleetProfile, profile_dir: Path) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from the profile's start; `end: auto` stops at the data's last day."""
    start = profile.partitions.start.isoformat()
    end = profile.partitions.end
    if end is None:
        return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC")
    if end == "auto":
        folder = source_folder(profile, profile_dir, get_settings().landing)
        last = last_source_day(profile, folder)
        if last is None:
            log.warning("%s: no telemetry found under %s; showing only the first partition", profile.name, folder)
            last = profile.partitions.start
        end = max(last, profile.partitions.start)
    return dg.DailyPartitionsDefinition(start_date=start, end_date=(end + timedelta(days=1)).isoformat(), timezone="UTC")


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days a (possibly multi-partition) run covers."""
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((last - first).days)]
