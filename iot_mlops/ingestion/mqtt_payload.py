"""The MQTT telemetry contract (topic and JSON payload), checked with the file ingestion rules.

Topic: `fleets/<fleet>/<device_id>/telemetry`, one reading per message, QoS 1.
Payload: a UTF-8 JSON object keyed by the profile's source column names, e.g. for water_heaters
`{"timestamp": "2026-01-01T00:01:00Z", "temperature_c": 57.2, "pressure_bar": 3.1, ...}`:
- the timestamp column: an ISO 8601 string, optionally followed by an IANA zone name
  (`2026-01-01 01:01:00 Europe/Paris`); an offset or zone is honoured, a naive time is UTC;
- every sensor's source column: a number (or numeric string); missing or null is `missing_value`;
- the device column is optional; when present it must equal the topic's device id;
- any other key is ignored.
Each message is decoded on its own in Python, so no message can fail the batch it arrives in.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa

from iot_mlops.ingestion.rules import OFFSET_PATTERN, TIMESTAMP_PATTERN, NumericColumn, number_expr, numeric_reasons, text_expr
from iot_mlops.lake import ident, sql_str
from iot_mlops.profiles.schema import FleetProfile

TOPIC = "fleets/{fleet}/{device}/telemetry"
RESERVED = {"device_id", "ts", "day", "reason", "h"}
_PARTS, _OFFSET = re.compile(TIMESTAMP_PATTERN), re.compile(OFFSET_PATTERN)


def topic_filter(fleet: str) -> str:
    """The subscription of one fleet's ingester."""
    return TOPIC.format(fleet=fleet, device="+")


def topic_device(topic: str) -> str | None:
    """The device id of a telemetry topic, None when the topic does not name one."""
    levels = topic.split("/")
    if len(levels) != 4 or levels[0] != "fleets" or levels[3] != "telemetry" or not levels[2].strip():
        return None
    return levels[2]


@dataclass(frozen=True)
class Message:
    """One received message; `seq` numbers an ingester run's messages in the order they arrived."""

    seq: int
    received_us: int  # receipt time, microseconds since the epoch (UTC)
    topic: str
    payload: bytes
    mid: int
    qos: int


class Number(str):
    """A JSON number kept as its text, so no float conversion decides what it is worth."""


def parse_timestamp(value: object, ambiguous: str = "quarantine") -> datetime | str:
    """A payload timestamp as naive UTC, or its quarantine reason: file ingestion's grammar and rules (rules.py)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "missing_value:timestamp"
    if not isinstance(value, str) or isinstance(value, Number):
        return "unparsable_timestamp"
    match = _PARTS.match(value.strip())
    local = _local(match.group(1), match.group(2)) if match else None
    if local is None:
        return "unparsable_timestamp"
    zone = match.group(3) or ""
    try:
        if zone in ("", "Z"):
            return local
        if _OFFSET.match(zone):
            digits = zone[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
            if hours > 23 or minutes > 59:
                return "unparsable_timestamp"
            return local - (-1 if zone[0] == "-" else 1) * timedelta(hours=hours, minutes=minutes)
        return _in_zone(local, zone, ambiguous)
    except OverflowError:  # the UTC time falls before year 1 or after year 9999
        return "unparsable_timestamp"


def _local(day: str, clock: str | None) -> datetime | None:
    """The local date-time the pattern matched, or None when it is no calendar time."""
    try:
        year, month, mday = (int(x) for x in day.split("-"))
        hour, minute, *rest = (clock or "0:00").split(":")
        second, _, fraction = (rest[0] if rest else "0").partition(".")
        parts = (int(hour), int(minute), int(second), int((fraction + "000000")[:6]))
        if parts == (24, 0, 0, 0):  # the end of a day is the next midnight, as DuckDB reads it for files
            return datetime(year, month, mday) + timedelta(days=1)
        return datetime(year, month, mday, *parts)
    except (ValueError, OverflowError):
        return None


def _in_zone(local: datetime, zone: str, ambiguous: str) -> datetime | str:
    """A local time in a named zone as naive UTC, or why it has no single UTC time."""
    try:
        tz = ZoneInfo(zone)
    except (ValueError, KeyError, OSError):  # an unknown zone is a KeyError
        return "unknown_time_zone"
    early, late = local.replace(tzinfo=tz, fold=0), local.replace(tzinfo=tz, fold=1)
    if early.utcoffset() != late.utcoffset():  # a clock change skips or repeats this local time
        if early.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != local:
            return "nonexistent_local_time"
        if ambiguous == "quarantine":
            return "ambiguous_local_time"
    chosen = late if ambiguous == "latest" else early
    return chosen.astimezone(timezone.utc).replace(tzinfo=None)


def as_text(value: object) -> str | None:
    """A JSON value as the text the SQL rules parse: strings as they are, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
            pass
    return json.dumps(value)


def digest(message: Message) -> str:
    """A message's identity: a redelivery has the same, so it is written once."""
    return hashlib.blake2b(message.topic.encode("utf-8", "surrogatepass") + b"\0" + message.payload, digest_size=16).hexdigest()


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class PayloadContract:
    """A fleet's payload rules: decoding per message in Python, the value rules as SQL over a batch."""

    def __init__(self, profile: FleetProfile):
        spec = profile.source.telemetry
        self.device_column = spec.device_column or profile.device_column
        self.timestamp_column = spec.timestamp_column or profile.timestamp_column
        self.sensors = [NumericColumn(s.name, s.source_column, s.min, s.max) for s in profile.sensors]
        # With `start: auto` the partitions begin where the data does: no reading is before them.
        self.first = profile.partitions.start if isinstance(profile.partitions.start, date) else date.min
        self.last = profile.partitions.end if isinstance(profile.partitions.end, date) else None
        self.ambiguous = profile.ambiguous_local_time
        self.max_future = profile.max_future  # a reading stamped later than its arrival plus this is `timestamp_in_future`
        clash = [s.source for s in self.sensors if s.source in RESERVED or s.source.startswith("__")]
        if clash:
            raise ValueError(f"{profile.name}: sensor column(s) {clash} clash with the MQTT ingester's own columns")
        self.schema = pa.schema(
            [
                ("__seq", pa.int64()),
                ("__received_at", pa.timestamp("us")),
                ("__topic", pa.string()),
                ("__device", pa.string()),
                ("__text", pa.string()),  # NULL when the payload is not UTF-8
                ("__payload", pa.binary()),
                ("__digest", pa.string()),  # identifies a redelivered message
                ("__payload_reason", pa.string()),
                ("__payload_device", pa.string()),
                ("__ts_reason", pa.string()),
                ("__ts", pa.timestamp("us")),
                ("__day", pa.date32()),
                *((s.source, pa.string()) for s in self.sensors),
            ]
        )

    def decode(self, message: Message) -> list:
        """One message as a row of `schema`: a reading, or the reason it is quarantined; never an exception."""
        try:
            return self._decode(message)
        except Exception as error:  # a message must never stop the ingester: quarantine what nothing above foresaw
            received = datetime(1970, 1, 1) + timedelta(microseconds=message.received_us)
            row = [message.seq, received, message.topic, topic_device(message.topic), None, message.payload, digest(message)]
            return row + [f"payload_error:{type(error).__name__}", None, None, None, received.date()] + [None] * len(self.sensors)

    def _decode(self, message: Message) -> list:
        received = datetime(1970, 1, 1) + timedelta(microseconds=message.received_us)
        row = [message.seq, received, message.topic, topic_device(message.topic), None, message.payload, digest(message), None, None, None, None, received.date()]
        fields: dict = {}
        try:
            row[4] = message.payload.decode("utf-8")
            fields = json.loads(row[4], parse_int=Number, parse_float=Number, parse_constant=reject_constant)
            if not isinstance(fields, dict):
                row[7], fields = "payload_not_object", {}
        except UnicodeDecodeError:
            row[7] = "payload_not_utf8"
        except (ValueError, RecursionError):
            row[7] = "unparsable_payload"
        row[8] = as_text(fields.get(self.device_column))
        ts = parse_timestamp(fields.get(self.timestamp_column), self.ambiguous)
        if isinstance(ts, str):
            row[9] = ts
        elif ts > received + self.max_future:
            row[9], row[10] = "timestamp_in_future", ts
        elif ts.date() < self.first or (self.last is not None and ts.date() > self.last):
            row[9], row[10] = "timestamp_outside_partition", ts
            row[11] = self.first if ts.date() < self.first else self.last
        else:
            row[10], row[11] = ts, ts.date()
        return row + [as_text(fields.get(s.source)) for s in self.sensors]

    def batch_table(self, messages: list[Message]) -> pa.Table:
        """Messages decoded as an Arrow table with `schema`."""
        rows = [self.decode(m) for m in messages]
        return pa.Table.from_arrays([pa.array([r[i] for r in rows], f.type) for i, f in enumerate(self.schema)], schema=self.schema)

    def landing_select(self) -> str:
        """Checked columns renamed to the landing part's columns."""
        renamed = [f"device_id AS {ident(self.device_column)}", f"ts AS {ident(self.timestamp_column)}"]
        return ", ".join(renamed + [ident(s.source) for s in self.sensors])

    def values_hash(self, prefix: str = "") -> str:
        """A hash of a reading's sensor values: a redelivery has the same, a conflicting reading another."""
        return "hash(" + ", ".join(f"CAST({prefix}{ident(s.source)} AS DOUBLE)" for s in self.sensors) + ")"

    def check_sql(self, batch: str) -> str:
        """Rows (message columns, device_id, ts, sensors by source name, day, reason); reason NULL when valid."""
        rules = []
        for sensor in self.sensors:
            value = number_expr(sensor.source, "VARCHAR")
            rules += numeric_reasons(sensor, "VARCHAR") + [(f"isinf({value})", f"out_of_range:{sensor.name}")]
        sensors = ", ".join(f"{number_expr(s.source, 'VARCHAR')} AS {ident(s.source)}" for s in self.sensors)
        whens = "\n".join(f"WHEN {condition} THEN {sql_str(reason)}" for condition, reason in rules)
        return f"""
            SELECT __seq, __received_at, __topic, __text, __payload, __digest,
                   __dev AS device_id, __ts AS ts, {sensors}, __day AS day,
                   CASE WHEN __payload_reason IS NOT NULL THEN __payload_reason
                        WHEN __dev IS NULL THEN 'missing_value:device_id'
                        WHEN {text_expr("__payload_device")} <> __dev THEN 'device_mismatch'
                        WHEN __ts_reason IS NOT NULL THEN __ts_reason
                        {whens}
                        ELSE NULL END AS reason
            FROM (SELECT *, {text_expr("__device")} AS __dev FROM {batch})"""
