"""The MQTT telemetry contract (topic and JSON payload), checked with the file ingestion rules.

Topic: `fleets/<fleet>/<device_id>/telemetry`, one reading per message, QoS 1.
Payload: a UTF-8 JSON object keyed by the profile's source column names, e.g. for water_heaters
`{"timestamp": "2026-01-01T00:01:00Z", "temperature_c": 57.2, "pressure_bar": 3.1, ...}`:
- the timestamp column: an ISO 8601 string; an offset is honoured, a naive time is UTC;
- every sensor's source column: a number (or numeric string); missing or null is `missing_value`;
- the device column is optional; when present it must equal the topic's device id;
- any other key is ignored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow as pa

from iot_mlops.ingestion.rules import NumericColumn, number_expr, numeric_reasons, reason_case, text_expr, timestamp_expr
from iot_mlops.lake import ident, sql_str
from iot_mlops.profiles.schema import FleetProfile

TOPIC = "fleets/{fleet}/{device}/telemetry"
RESERVED = {"device_id", "ts", "day", "reason", "h"}


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


BATCH_SCHEMA = pa.schema(
    [
        ("__seq", pa.int64()),
        ("__received_at", pa.timestamp("us")),
        ("__topic", pa.string()),
        ("__device", pa.string()),
        ("__text", pa.string()),  # NULL when the payload is not UTF-8
        ("__payload", pa.binary()),
        ("__digest", pa.string()),  # identifies a redelivered bad message
    ]
)


def batch_table(messages: list[Message]) -> pa.Table:
    """Messages as an Arrow table with BATCH_SCHEMA."""
    texts = []
    for m in messages:
        try:
            texts.append(m.payload.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(None)
    columns = [
        [m.seq for m in messages],
        [m.received_us for m in messages],
        [m.topic for m in messages],
        [topic_device(m.topic) for m in messages],
        texts,
        [m.payload for m in messages],
        [hashlib.blake2b(m.topic.encode() + b"\0" + m.payload, digest_size=16).hexdigest() for m in messages],
    ]
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, BATCH_SCHEMA, strict=True)], schema=BATCH_SCHEMA)


class PayloadContract:
    """A fleet's payload rules as SQL over a BATCH_SCHEMA relation."""

    def __init__(self, profile: FleetProfile):
        spec = profile.source.telemetry
        self.device_column = spec.device_column or profile.device_column
        self.timestamp_column = spec.timestamp_column or profile.timestamp_column
        self.sensors = [NumericColumn(s.name, s.source_column, s.min, s.max) for s in profile.sensors]
        self.first = profile.partitions.start
        self.last = profile.partitions.end if isinstance(profile.partitions.end, date) else None
        clash = [s.source for s in self.sensors if s.source in RESERVED or s.source.startswith("__")]
        if clash:
            raise ValueError(f"{profile.name}: sensor column(s) {clash} clash with the MQTT ingester's own columns")

    def landing_select(self) -> str:
        """Checked columns renamed to the landing part's columns."""
        renamed = [f"device_id AS {ident(self.device_column)}", f"ts AS {ident(self.timestamp_column)}"]
        return ", ".join(renamed + [ident(s.source) for s in self.sensors])

    def values_hash(self, prefix: str = "") -> str:
        """A hash of a reading's sensor values: a redelivery has the same, a conflicting reading another."""
        return "hash(" + ", ".join(f"CAST({prefix}{ident(s.source)} AS DOUBLE)" for s in self.sensors) + ")"

    def check_sql(self, batch: str) -> str:
        """Rows (message columns, device_id, ts, sensors by source name, day, reason); reason NULL when valid."""
        keys = [self.timestamp_column, *(s.source for s in self.sensors)]
        payload_device = "__payload_device"
        if self.device_column not in keys:
            keys.append(self.device_column)
        # JSON functions fail on malformed text, so fields are extracted only from valid objects.
        fields = ", ".join(
            f"CASE WHEN __object THEN json_extract_string(__text, {sql_str(json_path(k))}) END AS "
            f"{ident(payload_device if k == self.device_column else k)}"
            for k in keys
        )
        ts = timestamp_expr(self.timestamp_column, "VARCHAR")
        outside = [f"{ts} < DATE {sql_str(self.first)}"]
        day = f"CASE WHEN {ts} IS NULL THEN CAST(__received_at AS DATE) WHEN {ts} < DATE {sql_str(self.first)} THEN DATE {sql_str(self.first)}"
        if self.last is not None:
            after = sql_str(self.last + timedelta(days=1))
            outside.append(f"{ts} >= DATE {after}")
            day += f" WHEN {ts} >= DATE {after} THEN DATE {sql_str(self.last)}"
        day += f" ELSE CAST({ts} AS DATE) END"
        rules = [
            ("__text IS NULL", "payload_not_utf8"),
            ("NOT __valid", "unparsable_payload"),
            ("NOT __object", "payload_not_object"),
            ("__dev IS NULL", "missing_value:device_id"),
            (f"{text_expr(payload_device)} <> __dev", "device_mismatch"),
            (f"{text_expr(self.timestamp_column)} IS NULL", "missing_value:timestamp"),
            (f"{ts} IS NULL", "unparsable_timestamp"),
            (" OR ".join(outside), "timestamp_outside_partition"),
        ]
        for sensor in self.sensors:
            rules += numeric_reasons(sensor, "VARCHAR")
        sensors = ", ".join(f"{number_expr(s.source, 'VARCHAR')} AS {ident(s.source)}" for s in self.sensors)
        parsed = f"""
            SELECT *, CASE WHEN __valid THEN json_type(__text) = 'OBJECT' ELSE false END AS __object
            FROM (SELECT *, coalesce(json_valid(__text), false) AS __valid, {text_expr("__device")} AS __dev FROM {batch})"""
        return f"""
            SELECT __seq, __received_at, __topic, __text, __payload, __digest,
                   __dev AS device_id, {ts} AS ts, {sensors}, {day} AS day, {reason_case(rules)} AS reason
            FROM (SELECT *, {fields} FROM ({parsed}))"""


def json_path(key: str) -> str:
    """A JSON path selecting one top-level key, whatever characters it has."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
