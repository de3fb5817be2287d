"""Land batches of MQTT messages as day parts: valid readings beside the day's telemetry file, the rest in quarantine.

A flush appends one part per day touched (`<stem>.part-<n>-<n>.parquet`, written aside, fsynced,
renamed, folder fsynced), so what the ingester acknowledges is on disk. Parts are merged in tiers
of FANOUT, so a day keeps a few dozen files however long it streams; readers skip parts a merged
part covers, which are removed after GRACE_SECONDS. Which (device, timestamp) keys and which bad
messages landed is read back from a day's parts (and the day before's) the first time a batch
touches the day, so a batch redelivered after a crash adds nothing. A batch that fails anyway is
landed message by message, and a message that still fails is quarantined as `ingest_error:<type>`.

`step` hooks name the points a crash can fall between (STEPS), so tests can kill the process there.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from iot_mlops.ingestion.mqtt_payload import Message, PayloadContract, digest
from iot_mlops.ingestion.sources import landing_parts, part_range
from iot_mlops.lake import atomic_write, ident, sql_str
from iot_mlops.lake.atomic import fsync_path
from iot_mlops.profiles.schema import FleetProfile

FANOUT = 8
GRACE_SECONDS = 600.0
QUARANTINE_COLUMNS = "day, reason, source_file, source_row, record, received_at, payload, digest"
# Where a crash can fall: a part written aside / renamed, a batch checked / landed / acknowledged, a merge written.
STEPS = ("checked", "part_aside", "part_written", "landed", "acked", "merged")
Step = Callable[[str], None]


def no_step(name: str) -> None:
    """The default step hook: nothing."""


@dataclass
class BatchCounts:
    """What became of a batch: landed + quarantined + redelivered == received."""

    received: int = 0
    landed: int = 0
    quarantined: int = 0
    redelivered: int = 0  # dropped: the same reading (or bad message) had already landed
    by_reason: Counter = field(default_factory=Counter)
    days: set[date] = field(default_factory=set)
    gaps: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (device, last before, first after)

    def add(self, other: BatchCounts) -> None:
        self.received += other.received
        self.landed += other.landed
        self.quarantined += other.quarantined
        self.redelivered += other.redelivered
        self.by_reason.update(other.by_reason)
        self.days |= other.days
        self.gaps += other.gaps


def part_path(day_file: Path, first: int, last: int) -> Path:
    return day_file.parent / f"{day_file.stem}.part-{first:09d}-{last:09d}.parquet"


def copy_to(con: duckdb.DuckDBPyConnection, query: str, target: Path, step: Step = no_step) -> Path:
    """Write a query's rows to one Parquet file atomically and durably."""
    created = not target.parent.exists()

    def write(tmp: Path) -> None:
        con.execute(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd)")
        step("part_aside")

    atomic_write(target, write)
    fsync_path(target.parent)
    if created:
        fsync_path(target.parent.parent)
    step("part_written")
    return target


def append_part(con: duckdb.DuckDBPyConnection, day_file: Path, query: str, step: Step = no_step) -> Path:
    """Write a query's rows as the day's next part."""
    seq = max((part_range(p)[1] for p in landing_parts(day_file, live=False)), default=0) + 1
    return copy_to(con, query, part_path(day_file, seq, seq), step)


def merge_parts(con: duckdb.DuckDBPyConnection, day_file: Path, order_by: str, fanout: int = FANOUT, step: Step = no_step) -> int:
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
        query = f"SELECT * FROM read_parquet([{listed}], union_by_name = true, hive_partitioning = false) ORDER BY {order_by}"
        copy_to(con, query, part_path(day_file, part_range(group[0])[0], part_range(group[-1])[1]))
        step("merged")
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
                 fanout: int = FANOUT, grace_seconds: float = GRACE_SECONDS, step: Step = no_step):  # fmt: skip
        spec = profile.source.telemetry
        if not spec.is_daily:
            raise ValueError(f"{profile.name}: telemetry path {spec.path!r} has no {{date}}; MQTT ingestion lands files per day")
        self.con, self.spec, self.folder = con, spec, Path(folder)
        self.contract = PayloadContract(profile)
        self.open_days, self.fanout, self.grace_seconds, self.step = open_days, fanout, grace_seconds, step
        self.gap = profile.sampling_interval * 1.5  # a longer silence between a device's readings is a gap
        self._loaded: OrderedDict[date, None] = OrderedDict()
        self._forget()

    def day_file(self, day: date) -> Path:
        """The day's telemetry file of the profile; the ingester's parts go beside it."""
        return self.folder / self.spec.path.format(date=day.isoformat())

    def quarantine_file(self, day: date) -> Path:
        return self.folder / "quarantine" / self.spec.path.format(date=day.isoformat())

    def write_batch(self, messages: list[Message]) -> BatchCounts:
        """Land a batch durably; a message seen before (same reading or same bad payload) adds nothing."""
        try:
            return self._write_batch(messages)
        except Exception as error:
            # What is on disk is the truth: forget the keys in memory and read them back for the retry.
            self._forget()
            if len(messages) == 1:
                return self._quarantine_error(messages[0], error)
            counts = BatchCounts()
            for message in messages:
                counts.add(self.write_batch([message]))
            return counts

    def _write_batch(self, messages: list[Message]) -> BatchCounts:
        con, contract = self.con, self.contract
        if not messages:
            return BatchCounts()
        con.register("mqtt_batch", contract.batch_table(messages))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE checked AS {contract.check_sql('mqtt_batch')}")
        finally:
            con.unregister("mqtt_batch")
        days = [d for (d,) in con.execute("SELECT DISTINCT day FROM checked ORDER BY day").fetchall()]
        self._load(days)
        self._mark_repeats()
        self.step("checked")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE bad AS
                SELECT c.day, c.reason, c.__topic AS source_file, c.__seq AS source_row, c.__text AS record,
                       c.__received_at AS received_at, c.__payload AS payload, c.__digest AS digest
                FROM (SELECT *, row_number() OVER (PARTITION BY __digest ORDER BY __seq) AS nth
                      FROM checked WHERE reason IS NOT NULL AND reason <> 'redelivered') c
                ANTI JOIN seen_quarantine s ON s.digest = c.__digest
                WHERE c.nth = 1"""
        )
        gaps = self._gaps()
        order = f"{ident(contract.device_column)}, {ident(contract.timestamp_column)}"
        for day in days:
            where = f"day = DATE {sql_str(day)}"
            if con.execute(f"SELECT count(*) FROM bad WHERE {where}").fetchone()[0]:
                append_part(con, self.quarantine_file(day), f"SELECT {QUARANTINE_COLUMNS} FROM bad WHERE {where} ORDER BY source_row", self.step)
            if con.execute(f"SELECT count(*) FROM checked WHERE reason IS NULL AND {where}").fetchone()[0]:
                query = f"SELECT {contract.landing_select()} FROM checked WHERE reason IS NULL AND {where} ORDER BY {order}"
                append_part(con, self.day_file(day), query, self.step)
        con.execute(f"INSERT INTO seen_valid SELECT day, device_id, ts, {contract.values_hash()} FROM checked WHERE reason IS NULL")
        con.execute("INSERT INTO seen_quarantine SELECT day, digest FROM bad")
        (landed,) = con.execute("SELECT count(*) FROM checked WHERE reason IS NULL").fetchone()
        by_reason = Counter(dict(con.execute("SELECT reason, count(*) FROM bad GROUP BY reason").fetchall()))
        quarantined = sum(by_reason.values())
        self.step("landed")
        return BatchCounts(len(messages), landed, quarantined, len(messages) - landed - quarantined, by_reason, set(days), gaps)

    def _quarantine_error(self, message: Message, error: Exception) -> BatchCounts:
        """Quarantine a message its batch could not land, with the error's type as its reason."""
        received = datetime(1970, 1, 1) + timedelta(microseconds=message.received_us)
        day, key = received.date(), digest(message)
        self._load([day])
        if self.con.execute("SELECT count(*) FROM seen_quarantine WHERE digest = ?", [key]).fetchone()[0]:
            return BatchCounts(1, redelivered=1)
        try:
            text = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        reason = f"ingest_error:{type(error).__name__}"
        row = pa.table({"day": [day], "reason": [reason], "source_file": [message.topic], "source_row": [message.seq], "record": [text],
                        "received_at": pa.array([received], pa.timestamp("us")), "payload": pa.array([message.payload], pa.binary()),
                        "digest": [key]})  # fmt: skip
        self.con.register("mqtt_error", row)
        try:
            append_part(self.con, self.quarantine_file(day), f"SELECT {QUARANTINE_COLUMNS} FROM mqtt_error", self.step)
        finally:
            self.con.unregister("mqtt_error")
        self.con.execute("INSERT INTO seen_quarantine VALUES (?, ?)", [day, key])
        self.step("landed")
        return BatchCounts(1, quarantined=1, by_reason=Counter({reason: 1}), days={day})

    def compact(self, days: set[date]) -> int:
        """Merge the days' parts in tiers and remove long-superseded ones; returns merges done."""
        merges = 0
        order = f"{ident(self.contract.device_column)}, {ident(self.contract.timestamp_column)}"
        for day in sorted(days):
            for day_file, order_by in ((self.day_file(day), order), (self.quarantine_file(day), "source_row")):
                merges += merge_parts(self.con, day_file, order_by, self.fanout, self.step)
                remove_superseded(day_file, self.grace_seconds)
        return merges

    def _mark_repeats(self) -> None:
        """A valid reading whose key already landed is `redelivered` (same values) or a `duplicate` (other values).

        A message quarantined before is `redelivered` too, even if it would pass now (`timestamp_in_future`).
        """
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE repeats AS
                SELECT v.__seq, CASE
                    WHEN v.__digest IN (SELECT digest FROM seen_quarantine) THEN 'redelivered'
                    WHEN s.h IS NOT NULL THEN CASE WHEN s.h = v.h THEN 'redelivered' ELSE 'duplicate' END
                    WHEN v.nth > 1 THEN CASE WHEN v.first_h = v.h THEN 'redelivered' ELSE 'duplicate' END END AS reason
                FROM (SELECT __seq, __digest, day, device_id, ts, h, first_value(h) OVER w AS first_h, row_number() OVER w AS nth
                      FROM (SELECT *, {self.contract.values_hash()} AS h FROM checked WHERE reason IS NULL)
                      WINDOW w AS (PARTITION BY device_id, ts ORDER BY __seq)) v
                LEFT JOIN seen_valid s ON s.day = v.day AND s.device_id = v.device_id AND s.ts = v.ts"""
        )
        self.con.execute("UPDATE checked SET reason = r.reason FROM repeats r WHERE checked.__seq = r.__seq AND r.reason IS NOT NULL")

    def _gaps(self) -> list[tuple[str, datetime, datetime]]:
        """(device, last reading before, next reading) where a device's newest readings skip more than 1.5 intervals.

        Each device's newest landed time is kept in memory, read from the loaded days when the device is first seen.
        """
        con = self.con
        con.execute("CREATE OR REPLACE TEMP TABLE fresh AS SELECT DISTINCT device_id, ts FROM checked WHERE reason IS NULL")
        con.execute("""INSERT INTO newest SELECT device_id, max(ts) FROM seen_valid
                       WHERE device_id IN (SELECT device_id FROM fresh) AND device_id NOT IN (SELECT device_id FROM newest)
                       GROUP BY device_id""")  # fmt: skip
        gaps = con.execute(
            f"""SELECT device_id, prev, ts FROM (
                    SELECT *, lag(ts) OVER (PARTITION BY device_id ORDER BY ts) AS prev FROM (
                        SELECT f.device_id, f.ts, true AS fresh FROM fresh f LEFT JOIN newest n USING (device_id)
                        WHERE n.ts IS NULL OR f.ts > n.ts
                        UNION ALL SELECT device_id, ts, false FROM newest WHERE device_id IN (SELECT device_id FROM fresh)))
                WHERE fresh AND ts - prev > to_microseconds({int(self.gap.total_seconds() * 1e6)}) ORDER BY device_id, ts"""
        ).fetchall()
        con.execute("""INSERT OR REPLACE INTO newest SELECT f.device_id, greatest(max(f.ts), any_value(n.ts))
                       FROM fresh f LEFT JOIN newest n USING (device_id) GROUP BY f.device_id""")  # fmt: skip
        return gaps

    def _forget(self) -> None:
        self.con.execute("CREATE OR REPLACE TEMP TABLE seen_valid (day DATE, device_id VARCHAR, ts TIMESTAMP, h UBIGINT)")
        self.con.execute("CREATE OR REPLACE TEMP TABLE seen_quarantine (day DATE, digest VARCHAR)")
        self.con.execute("CREATE OR REPLACE TEMP TABLE newest (device_id VARCHAR PRIMARY KEY, ts TIMESTAMP)")
        self._loaded.clear()

    def _load(self, days: list[date]) -> None:
        """Read what landed on these days and the days before; forget the least recently used other days."""
        contract, wanted = self.contract, sorted(set(days) | {d - timedelta(days=1) for d in days if d > date.min})
        for day in wanted:
            if day in self._loaded:
                self._loaded.move_to_end(day)
                continue
            parts = ", ".join(sql_str(p) for p in landing_parts(self.day_file(day)))
            if parts:
                device, ts = ident(contract.device_column), ident(contract.timestamp_column)
                self.con.execute(
                    f"INSERT INTO seen_valid SELECT DATE {sql_str(day)}, CAST({device} AS VARCHAR), CAST({ts} AS TIMESTAMP), "
                    f"{contract.values_hash()} FROM read_parquet([{parts}], union_by_name = true, hive_partitioning = false)"
                )
            quarantine = ", ".join(sql_str(p) for p in landing_parts(self.quarantine_file(day)))
            if quarantine:
                self.con.execute(f"INSERT INTO seen_quarantine SELECT DATE {sql_str(day)}, digest FROM read_parquet([{quarantine}], hive_partitioning = false)")
            self._loaded[day] = None
        for day in [d for d in self._loaded if d not in wanted][: max(0, len(self._loaded) - 2 * self.open_days)]:
            self.con.execute(f"DELETE FROM seen_valid WHERE day = DATE {sql_str(day)}")
            self.con.execute(f"DELETE FROM seen_quarantine WHERE day = DATE {sql_str(day)}")
            del self._loaded[day]
