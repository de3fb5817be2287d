"""Land batches of MQTT messages as day parts: valid readings beside the day's telemetry file, the rest in quarantine.

A flush appends one part per day touched (`<stem>.part-<n>-<n>.parquet`, written aside, fsynced,
renamed, folder fsynced), so what the ingester acknowledges is on disk. Parts are merged in tiers
of FANOUT, so a day keeps a few dozen files however long it streams; readers skip parts a merged
part covers, which are removed after GRACE_SECONDS. Which (device, timestamp) keys landed is read
back from a day's parts the first time a batch touches the day, so dedupe survives restarts.
"""

from __future__ import annotations

import os
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from iot_mlops.ingestion.mqtt_payload import Message, PayloadContract, batch_table
from iot_mlops.ingestion.sources import landing_parts, part_range
from iot_mlops.lake import atomic_write, ident, sql_str
from iot_mlops.profiles.schema import FleetProfile

FANOUT = 8
GRACE_SECONDS = 600.0
QUARANTINE_COLUMNS = "day, reason, source_file, source_row, record, received_at, payload, digest"


@dataclass
class BatchCounts:
    """What became of a batch: landed + quarantined + redelivered == received."""

    received: int = 0
    landed: int = 0
    quarantined: int = 0
    redelivered: int = 0  # dropped: the same reading (or bad message) had already landed
    by_reason: Counter = field(default_factory=Counter)
    days: set[date] = field(default_factory=set)

    def add(self, other: BatchCounts) -> None:
        self.received += other.received
        self.landed += other.landed
        self.quarantined += other.quarantined
        self.redelivered += other.redelivered
        self.by_reason.update(other.by_reason)
        self.days |= other.days


def part_path(day_file: Path, first: int, last: int) -> Path:
    return day_file.parent / f"{day_file.stem}.part-{first:09d}-{last:09d}.parquet"


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_to(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> Path:
    """Write a query's rows to one Parquet file atomically and durably."""
    created = not target.parent.exists()
    atomic_write(target, lambda tmp: con.execute(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd)"))
    fsync_dir(target.parent)
    if created:
        fsync_dir(target.parent.parent)
    return target


def append_part(con: duckdb.DuckDBPyConnection, day_file: Path, query: str) -> Path:
    """Write a query's rows as the day's next part."""
    seq = max((part_range(p)[1] for p in landing_parts(day_file, live=False)), default=0) + 1
    return copy_to(con, query, part_path(day_file, seq, seq))


def merge_parts(con: duckdb.DuckDBPyConnection, day_file: Path, order_by: str, fanout: int = FANOUT) -> int:
    """Merge the newest FANOUT parts of equal span into one, as often as possible; returns merges done."""
    merges = 0
    while True:
        parts = landing_parts(day_file)
        spans = [last - first + 1 for first, last in map(part_range, parts)]
        tail = len(spans)
        while tail > 0 and spans[tail - 1] == spans[-1]:
            tail -= 1
        if len(parts) - tail < fanout:
            return merges
        group = parts[tail : tail + fanout]
        listed = ", ".join(sql_str(p) for p in group)
        query = f"SELECT * FROM read_parquet([{listed}], union_by_name = true) ORDER BY {order_by}"
        copy_to(con, query, part_path(day_file, part_range(group[0])[0], part_range(group[-1])[1]))
        merges += 1


def remove_superseded(day_file: Path, grace_seconds: float = GRACE_SECONDS) -> int:
    """Remove parts a merged part has covered for longer than the grace period (readers may hold them)."""
    live = {p: part_range(p) for p in landing_parts(day_file)}
    removed, now = 0, time.time()
    for part in landing_parts(day_file, live=False):
        first, last = part_range(part)
        covering = [p for p, (lo, hi) in live.items() if p != part and lo <= first and last <= hi]
        if covering and all(now - p.stat().st_mtime > grace_seconds for p in covering):
            part.unlink(missing_ok=True)
            removed += 1
    return removed


class MqttLanding:
    """Checks, dedupes and lands batches of one fleet's messages under its landing folder."""

    def __init__(self, con: duckdb.DuckDBPyConnection, profile: FleetProfile, folder: Path, open_days: int = 3,
                 fanout: int = FANOUT, grace_seconds: float = GRACE_SECONDS):  # fmt: skip
        spec = profile.source.telemetry
        if not spec.is_daily:
            raise ValueError(f"{profile.name}: telemetry path {spec.path!r} has no {{date}}; MQTT ingestion lands files per day")
        self.con, self.spec, self.folder = con, spec, Path(folder)
        self.contract = PayloadContract(profile)
        self.open_days, self.fanout, self.grace_seconds = open_days, fanout, grace_seconds
        self._loaded: OrderedDict[date, None] = OrderedDict()
        con.execute("CREATE OR REPLACE TEMP TABLE seen_valid (day DATE, device_id VARCHAR, ts TIMESTAMP, h UBIGINT)")
        con.execute("CREATE OR REPLACE TEMP TABLE seen_quarantine (day DATE, digest VARCHAR)")

    def day_file(self, day: date) -> Path:
        """The day's telemetry file of the profile; the ingester's parts go beside it."""
        return self.folder / self.spec.path.format(date=day.isoformat())

    def quarantine_file(self, day: date) -> Path:
        return self.folder / "quarantine" / self.spec.path.format(date=day.isoformat())

    def write_batch(self, messages: list[Message]) -> BatchCounts:
        """Land a batch durably; a message seen before (same reading or same bad payload) adds nothing."""
        con, contract = self.con, self.contract
        if not messages:
            return BatchCounts()
        con.register("mqtt_batch", batch_table(messages))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE checked AS {contract.check_sql('mqtt_batch')}")
        finally:
            con.unregister("mqtt_batch")
        days = [d for (d,) in con.execute("SELECT DISTINCT day FROM checked ORDER BY day").fetchall()]
        self._load(days)
        self._mark_repeats()
        con.execute(
            """CREATE OR REPLACE TEMP TABLE bad AS
                SELECT c.day, c.reason, c.__topic AS source_file, c.__seq AS source_row, c.__text AS record,
                       c.__received_at AS received_at, c.__payload AS payload, c.__digest AS digest
                FROM (SELECT *, row_number() OVER (PARTITION BY day, __digest ORDER BY __seq) AS nth
                      FROM checked WHERE reason IS NOT NULL AND reason <> 'redelivered') c
                ANTI JOIN seen_quarantine s ON s.day = c.day AND s.digest = c.__digest
                WHERE c.nth = 1"""
        )
        order = f"{ident(contract.device_column)}, {ident(contract.timestamp_column)}"
        for day in days:
            where = f"day = DATE {sql_str(day)}"
            if con.execute(f"SELECT count(*) FROM bad WHERE {where}").fetchone()[0]:
                append_part(con, self.quarantine_file(day), f"SELECT {QUARANTINE_COLUMNS} FROM bad WHERE {where} ORDER BY source_row")
            if con.execute(f"SELECT count(*) FROM checked WHERE reason IS NULL AND {where}").fetchone()[0]:
                query = f"SELECT {contract.landing_select()} FROM checked WHERE reason IS NULL AND {where} ORDER BY {order}"
                append_part(con, self.day_file(day), query)
        con.execute(f"INSERT INTO seen_valid SELECT day, device_id, ts, {contract.values_hash()} FROM checked WHERE reason IS NULL")
        con.execute("INSERT INTO seen_quarantine SELECT day, digest FROM bad")
        (landed,) = con.execute("SELECT count(*) FROM checked WHERE reason IS NULL").fetchone()
        by_reason = Counter(dict(con.execute("SELECT reason, count(*) FROM bad GROUP BY reason").fetchall()))
        quarantined = sum(by_reason.values())
        return BatchCounts(len(messages), landed, quarantined, len(messages) - landed - quarantined, by_reason, set(days))

    def compact(self, days: set[date]) -> int:
        """Merge the days' parts in tiers and remove long-superseded ones; returns merges done."""
        merges = 0
        order = f"{ident(self.contract.device_column)}, {ident(self.contract.timestamp_column)}"
        for day in sorted(days):
            for day_file, order_by in ((self.day_file(day), order), (self.quarantine_file(day), "source_row")):
                merges += merge_parts(self.con, day_file, order_by, self.fanout)
                remove_superseded(day_file, self.grace_seconds)
        return merges

    def _mark_repeats(self) -> None:
        """A valid reading whose key already landed is `redelivered` (same values) or a `duplicate` (other values)."""
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE repeats AS
                SELECT v.__seq, CASE
                    WHEN s.h IS NOT NULL THEN CASE WHEN s.h = v.h THEN 'redelivered' ELSE 'duplicate' END
                    WHEN v.nth > 1 THEN CASE WHEN v.first_h = v.h THEN 'redelivered' ELSE 'duplicate' END END AS reason
                FROM (SELECT __seq, day, device_id, ts, h, first_value(h) OVER w AS first_h, row_number() OVER w AS nth
                      FROM (SELECT *, {self.contract.values_hash()} AS h FROM checked WHERE reason IS NULL)
                      WINDOW w AS (PARTITION BY device_id, ts ORDER BY __seq)) v
                LEFT JOIN seen_valid s ON s.day = v.day AND s.device_id = v.device_id AND s.ts = v.ts"""
        )
        self.con.execute("UPDATE checked SET reason = r.reason FROM repeats r WHERE checked.__seq = r.__seq AND r.reason IS NOT NULL")

    def _load(self, days: list[date]) -> None:
        """Read the keys already landed on these days; forget the least recently used other days."""
        contract = self.contract
        for day in days:
            if day in self._loaded:
                self._loaded.move_to_end(day)
                continue
            parts = ", ".join(sql_str(p) for p in landing_parts(self.day_file(day)))
            if parts:
                device, ts = ident(contract.device_column), ident(contract.timestamp_column)
                self.con.execute(
                    f"INSERT INTO seen_valid SELECT DATE {sql_str(day)}, CAST({device} AS VARCHAR), CAST({ts} AS TIMESTAMP), "
                    f"{contract.values_hash()} FROM read_parquet([{parts}], union_by_name = true)"
                )
            quarantine = ", ".join(sql_str(p) for p in landing_parts(self.quarantine_file(day)))
            if quarantine:
                self.con.execute(f"INSERT INTO seen_quarantine SELECT DATE {sql_str(day)}, digest FROM read_parquet([{quarantine}])")
            self._loaded[day] = None
        for day in [d for d in self._loaded if d not in days][: max(0, len(self._loaded) - self.open_days)]:
            self.con.execute(f"DELETE FROM seen_valid WHERE day = DATE {sql_str(day)}")
            self.con.execute(f"DELETE FROM seen_quarantine WHERE day = DATE {sql_str(day)}")
            del self._loaded[day]
