"""Messages that once stopped the MQTT ingester, or landed twice or nowhere: each lands exactly once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from iot_mlops.ingestion.mqtt_landing import MqttLanding
from iot_mlops.ingestion.mqtt_payload import Message
from iot_mlops.sources.mqtt_publish import publish
from iot_mlops_tests.fleet import Fleet, clean_day, reading, stamp
from iot_mlops_tests.ingestion.test_mqtt import DAY, HOST, PORT, folder_of, ingesting, landed, payload, readings, today

ROW = clean_day(DAY)[0]


def raw(**fields: str) -> bytes:
    """A payload with fields written as raw JSON text (numbers JSON itself cannot produce from Python)."""
    base = {k: json.dumps(v) for k, v in ROW.items() if k != "device"}
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in {**base, **fields}.items()) + "}").encode()


POISON = [
    (payload(ROW, time="10000-01-01T00:00:00Z"), "unparsable_timestamp"),
    (payload(ROW, time="+12024-01-01T00:00:00"), "unparsable_timestamp"),
    (payload(ROW, time="9999-12-31T23:00:00-05:00"), "unparsable_timestamp"),  # year 10000 in UTC
    (payload(ROW, time="0001-01-01T00:30:00+01:00"), "unparsable_timestamp"),  # year 0 in UTC
    (payload(ROW, time="infinity"), "unparsable_timestamp"),
    (payload(ROW, time="-infinity"), "unparsable_timestamp"),
    (payload(ROW, time="9999-12-31T23:00:00Z"), "timestamp_in_future"),
    (payload(ROW, time="2024-10-27 02:30:00 Europe/Paris"), "ambiguous_local_time"),  # happened twice
    (payload(ROW, time="2024-03-31 02:30:00 Europe/Paris"), "nonexistent_local_time"),  # never happened
    (payload(ROW, time="2024-01-01 00:30:00 Mars/Olympus"), "unknown_time_zone"),
    (payload(ROW, time=1704067200), "unparsable_timestamp"),
    (raw(temp="1e400"), "out_of_range:temp"),
    (raw(pressure="-1e999"), "out_of_range:pressure"),
    (raw(temp="NaN"), "unparsable_payload"),
    (raw(temp='{"value": 50}'), "non_numeric:temp"),
    (raw(temp="true"), "non_numeric:temp"),
    (b"[" * 100_000 + b"]" * 100_000, "unparsable_payload"),
    (raw(temp='"\\ud800"'), "non_numeric:temp"),
    (raw(device='"\\ud800"'), "device_mismatch"),
    (raw(temp='"hot"', padding=json.dumps("x" * 1_000_000)), "non_numeric:temp"),
    (b"{}", "missing_value:timestamp"),
    (b"", "unparsable_payload"),
]


def test_poison_messages_between_valid_ones_go_to_quarantine_and_every_valid_reading_lands(mqtt_fleet: Fleet):
    mqtt_fleet.spec["partitions"].pop("end")  # no fixed end: only a sanity bound stops far-future times
    mqtt_fleet.write_profile()
    folder = folder_of(mqtt_fleet)
    good = readings()
    stream = good[:30] + [("d1", p) for p, _ in POISON] + good[30:]
    with ingesting(mqtt_fleet.profile(), folder, max_batch=7) as ingester:
        publish(mqtt_fleet.name, stream, HOST, PORT)
    assert (ingester.stats.received, ingester.stats.landed, ingester.stats.quarantined) == (len(stream), len(good), len(POISON))
    valid = landed(folder)
    assert len(valid) == len(good) and not valid.duplicated(["device", "time"]).any()
    bad = pd.concat([landed(folder, d, "quarantine") for d in {DAY, today()}], ignore_index=True)
    assert sorted(zip(bad["payload"], bad["reason"], strict=True)) == sorted(POISON)

    # Redelivered in full to a restarted ingester: nothing lands a second time.
    with ingesting(mqtt_fleet.profile(), folder) as again:
        publish(mqtt_fleet.name, stream, HOST, PORT)
    assert (again.stats.landed, again.stats.quarantined, again.stats.redelivered) == (0, 0, len(stream))
    assert len(landed(folder)) == len(good)
    assert Counter(pd.concat([landed(folder, d, "quarantine") for d in {DAY, today()}])["reason"]) == Counter(r for _, r in POISON)


def test_infinity_and_year_9999_are_quarantined_once_never_counted_and_lost_or_written_twice(tmp_path):
    fleet = Fleet(tmp_path / "fleet", tmp_path / "lake", tmp_path / "landing")
    fleet.spec["partitions"].pop("end")
    profile = fleet.write_profile()
    folder = folder_of(fleet)
    sent = [payload(ROW, time="infinity"), payload(ROW, time="9999-12-31T23:00:00Z"), payload(ROW)]
    received = int(pd.Timestamp(f"{today()} 12:00").value // 1000)
    with duckdb.connect() as con:
        counts = MqttLanding(con, profile, folder).write_batch([Message(i, received, "fleets/tiny/d1/telemetry", p, i, 1) for i, p in enumerate(sent)])
    assert (counts.landed, counts.quarantined) == (1, 2)
    files = sorted(p for p in folder.rglob("*.parquet"))
    rows = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    assert len(rows) == 3  # every message on disk once: one valid reading, two quarantined
    assert sorted(rows["reason"].dropna()) == ["timestamp_in_future", "unparsable_timestamp"]


def test_a_resumed_session_whose_broker_dropped_queued_messages_warns_with_the_gap(mqtt_fleet: Fleet):
    mqtt_fleet.spec["sampling_interval"] = "1min"
    mqtt_fleet.write_profile()
    folder = folder_of(mqtt_fleet)
    minute = lambda n: ("d1", payload(reading("d1", stamp(DAY) + timedelta(minutes=n))))  # noqa: E731
    first: list[str] = []
    with ingesting(mqtt_fleet.profile(), folder, log=first.append):
        publish(mqtt_fleet.name, [minute(n) for n in range(10)], HOST, PORT)
    # While the ingester is away the broker queues at most max_queued_messages (1000 by default) and drops the rest.
    publish(mqtt_fleet.name, [minute(n) for n in range(10, 1300)], HOST, PORT)
    lines: list[str] = []
    with ingesting(mqtt_fleet.profile(), folder, log=lines.append, idle_timeout=2.0) as resumed:
        publish(mqtt_fleet.name, [minute(n) for n in range(1300, 1310)], HOST, PORT)
    assert resumed.stats.session_present and resumed.stats.gaps_found == 1
    times = sorted(landed(folder)["time"])
    holes = [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a > timedelta(minutes=1)]
    assert len(holes) == 1, "the broker dropped nothing: is max_queued_messages above 1290?"
    (before, after), missing = holes[0], int((holes[0][1] - holes[0][0]) / timedelta(minutes=1)) - 1
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and f"d1 {before:%Y-%m-%d %H:%M:%S} -> {after:%Y-%m-%d %H:%M:%S} ({missing} missing)" in warnings[0]
    assert not [line for line in first if line.startswith("warning:")]


def fleet_landing(tmp_path, step) -> tuple[MqttLanding, Path]:
    fleet = Fleet(tmp_path / "fleet", tmp_path / "lake", tmp_path / "landing")
    return MqttLanding(duckdb.connect(), fleet.write_profile(), tmp_path / "landing", step=step), tmp_path / "landing"


def batch_of(payloads: list[bytes]) -> list[Message]:
    received = int(pd.Timestamp(f"{today()} 12:00").value // 1000)
    return [Message(i, received, "fleets/tiny/d1/telemetry", p, i, 1) for i, p in enumerate(payloads)]


def on_disk(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = list(folder.rglob("*.parquet"))
    frame = lambda ps: pd.concat([pd.read_parquet(p) for p in ps], ignore_index=True) if ps else pd.DataFrame()  # noqa: E731
    return frame([p for p in parts if "quarantine" not in p.parts]), frame([p for p in parts if "quarantine" in p.parts])


@pytest.mark.parametrize("fail_at", ["checked", "part_aside", "part_written", "landed"])
def test_a_batch_that_fails_midway_is_landed_message_by_message_once(tmp_path, fail_at: str):
    calls: Counter = Counter()

    def fail_once(name: str) -> None:
        calls[name] += 1
        if name == fail_at and calls[name] == 1:
            raise RuntimeError("the batch failed here")

    landing, folder = fleet_landing(tmp_path, fail_once)
    good = [payload(row) for row in clean_day(DAY) if row["device"] == "d1"][:5]
    counts = landing.write_batch(batch_of(good[:2] + [payload(ROW, temp=250), b"not json"] + good[2:]))
    assert counts.received == 7 == counts.landed + counts.quarantined + counts.redelivered
    valid, bad = on_disk(folder)
    assert len(valid) == 5 and not valid.duplicated(["device", "time"]).any()
    assert sorted(bad["reason"]) == ["out_of_range:temp", "unparsable_payload"]


def test_a_message_that_cannot_be_landed_is_quarantined_as_ingest_error_once(tmp_path):
    def always(name: str) -> None:
        if name == "checked":
            raise RuntimeError("no batch gets past its check")

    landing, folder = fleet_landing(tmp_path, always)
    sent = [payload(ROW), b"not json"]
    counts = landing.write_batch(batch_of(sent))
    assert (counts.landed, counts.quarantined, dict(counts.by_reason)) == (0, 2, {"ingest_error:RuntimeError": 2})
    assert landing.write_batch(batch_of(sent)).redelivered == 2
    valid, bad = on_disk(folder)
    assert valid.empty and sorted(bad["payload"]) == sorted(sent) and set(bad["record"]) == {p.decode() for p in sent}
