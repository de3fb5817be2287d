"""Daily partitions of each fleet, from its profile (and, for `start: auto` or `end: auto`, from its data),
and the FleetContext every factory of a fleet gets."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from iot_mlops.ingestion.rules import layered, timestamp_layers
from iot_mlops.ingestion.sources import SourceFile
from iot_mlops.lake import connect
from iot_mlops.profiles import FleetProfile, source_folder
from iot_mlops.settings import get_settings

log = logging.getLogger(__name__)


def backfill_policy() -> dg.BackfillPolicy:
    """The daily assets' backfill policy: runs of IOT_MLOPS_BACKFILL_PARTITIONS_PER_RUN days, else one run."""
    per_run = get_settings().backfill_partitions_per_run
    return dg.BackfillPolicy.multi_run(per_run) if per_run else dg.BackfillPolicy.single_run()


def future_limit(profile: FleetProfile, now: datetime | None = None) -> datetime:
    """The latest believable reading time (naive UTC): now + the profile's max_future."""
    now = now or datetime.now(UTC)
    return (now.astimezone(UTC).replace(tzinfo=None) + profile.max_future).replace(microsecond=0)


def source_span(profile: FleetProfile, folder: Path, limit: datetime | None = None) -> tuple[date, date] | None:
    """The first and last day the fleet's telemetry covers up to `limit` (later readings are ignored), or None."""
    spec = profile.source.telemetry
    limit = limit or future_limit(profile)
    if spec.is_daily:
        # The day is in the path before any file name, so MQTT parts beside a day's file count too.
        dated = re.compile(re.escape(spec.path.split("{date}")[0]) + r"(\d{4}-\d{2}-\d{2})")
        pattern = Path(spec.path.format(date="*"))
        files = [*folder.glob(str(pattern)), *folder.glob(str(pattern.with_name(f"{pattern.stem}.part-*{pattern.suffix}")))]
        matches = (dated.match(p.relative_to(folder).as_posix()) for p in files)
        days = [d for d in (_iso_day(m.group(1)) for m in matches if m) if d and d <= limit.date()]
        return (min(days), max(days)) if days else None
    file = SourceFile(folder / spec.path, None)
    if not file.path.is_file() or file.path.stat().st_size == 0:
        return None
    column = spec.timestamp_column or profile.timestamp_column
    with connect() as con:
        types = {name: dtype for name, dtype, *_ in con.execute(f"DESCRIBE SELECT * FROM {file.reader()}").fetchall()}
        if column not in types:
            return None
        source = layered(file.reader(), timestamp_layers(column, types[column], profile.ambiguous_local_time))
        first, last = con.execute(f"SELECT min(__ts), max(__ts) FROM {source} WHERE __ts <= ?", [limit]).fetchone()
    return (first.date(), last.date()) if last else None


def last_source_day(profile: FleetProfile, folder: Path, limit: datetime | None = None) -> date | None:
    """The last day the fleet's telemetry covers up to `limit` (readings later are ignored), or None."""
    span = source_span(profile, folder, limit)
    return span[1] if span else None


def _iso_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def fixed_end(profile: FleetProfile) -> date | None:
    """The last partition when the profile fixes it, else None (`auto` or open)."""
    end = profile.partitions.end
    return end if isinstance(end, date) else None


def partition_start(profile: FleetProfile, profile_dir: Path) -> date:
    """The first partition: the profile's date, or for `start: auto` the first day of its telemetry (today without any)."""
    start = profile.partitions.start
    if isinstance(start, date):
        return start
    folder = source_folder(profile, profile_dir, get_settings().landing)
    span = source_span(profile, folder)
    if span is None:
        log.info("%s: no telemetry under %s yet; partitions start today", profile.name, folder)
        return datetime.now(UTC).date()
    return span[0]


def daily_partitions(profile: FleetProfile, profile_dir: Path) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from the profile's start; `end: auto` stops at the data's last day, an open end at today."""
    first = partition_start(profile, profile_dir)
    start, end = first.isoformat(), profile.partitions.end
    if end is None:
        # Today, in progress, is a partition too: serving's features can be refreshed with the day so far.
        return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)
    if end == "auto":
        folder = source_folder(profile, profile_dir, get_settings().landing)
        last = last_source_day(profile, folder)  # readings in the future never count
        if last is None:
            log.warning("%s: no telemetry found under %s; showing only the first partition", profile.name, folder)
        end = max(last or first, first)
    return dg.DailyPartitionsDefinition(start_date=start, end_date=(end + timedelta(days=1)).isoformat(), timezone="UTC")


def daily_asset(**kwargs):
    """`dg.asset` with the deployment's backfill policy (a beta parameter in Dagster 1.13, its warning silenced here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)
        return dg.asset(backfill_policy=backfill_policy(), **kwargs)


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days a (possibly multi-partition) run covers."""
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((last - first).days)]


@dataclass(frozen=True)
class FleetContext:
    """One fleet as its factories see it: the profile (start resolved), its folder, partitions built once."""

    profile: FleetProfile
    profile_dir: Path
    partitions: dg.DailyPartitionsDefinition

    @classmethod
    def of(cls, profile: FleetProfile, profile_dir: Path) -> FleetContext:
        """Resolve `start: auto` and scan for `end: auto` once, so every asset of the fleet agrees on its days."""
        if not isinstance(profile.partitions.start, date):
            start = partition_start(profile, profile_dir)
            profile = profile.model_copy(update={"partitions": profile.partitions.model_copy(update={"start": start})})
        return cls(profile, profile_dir, daily_partitions(profile, profile_dir))

    @property
    def fleet(self) -> str:
        return self.profile.name

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.profile.name, name])

    def keys(self, names: Iterable[str]) -> list[dg.AssetKey]:
        return [self.key(name) for name in names]
