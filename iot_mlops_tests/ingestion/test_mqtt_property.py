"""Property: mixed, malformed and overlapping MQTT messages land once each, valid with their true UTC time, reproducibly."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_mlops.ingestion.mqtt_landing import MqttLanding
from iot_mlops.ingestion.mqtt_payload import Message
from iot_mlops.ingestion.sources import landing_parts
from iot_mlops_tests.fleet import Fleet

NOW = datetime(2024, 1, 2, 12)  # every message arrives then: readings after NOW + 1 day are in the future
FIRST = datetime(2024, 1, 1)
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
BAD_TIMES = [("10000-01-01T00:00:00Z", "unparsable_timestamp"), ("9999-12-31T23:30:00-01:00", "unparsable_timestamp"),
             ("infinity", "unparsable_timestamp"), ("", "missing_value:timestamp"), ("2023-12-31T23:59:59Z", "timestamp_outside_partition"),
             ("2024-01-03T12:00:01Z", "timestamp_in_future"), ("2024-01-01T00:00:00 Mars/Olympus", "unknown_time_zone")]  # fmt: skip
BAD_VALUES = [("1e400", "out_of_range:temp"), ("NaN", "unparsable_payload"), ('"hot"', "non_numeric:temp"), ("{}", "non_numeric:temp"),
              ("1000", "out_of_range:temp"), ("null", "missing_value:temp"), ('"nan"', "missing_value:temp")]  # fmt: skip


def render(utc: datetime, style: tuple[str, object]) -> str:
    """A UTC time written as a device might: naive, Z, a numeric offset or a zone name."""
    kind, arg = style
    aware = utc.replace(tzinfo=timezone.utc)
    if kind == "naive":
        return utc.isoformat(sep=str(arg))
    if kind == "z":
        return utc.isoformat() + "Z"
    if kind == "offset":
        return aware.astimezone(timezone(timedelta(minutes=int(arg)))).isoformat()
    return aware.astimezone(ZoneInfo(str(arg))).replace(tzinfo=None).isoformat(sep=" ") + f" {arg}"


styles = st.one_of(st.tuples(st.just("naive"), st.sampled_from("T ")), st.tuples(st.just("z"), st.none()),
                   st.tuples(st.just("offset"), st.integers(-23 * 60 - 59, 23 * 60 + 59)), st.tuples(st.just("zone"), st.sampled_from(ZONES)))  # fmt: skip
times = st.builds(lambda i, us: FIRST + timedelta(minutes=53 * i, microseconds=us), st.integers(0, 60), st.sampled_from([0, 0, 500_000, 123_456]))
values = st.sampled_from([0.0, 20.5, 57.25, 100.0, 3.0000000000000004])


@st.composite
def valid_reading(draw) -> tuple[str, bytes, tuple]:
    device, utc, temp, pressure = draw(st.sampled_from(["d1", "d2"])), draw(times), draw(values), draw(values) / 10
    fields = {"time": render(utc, draw(styles)), "temp": str(temp) if draw(st.booleans()) else temp, "pressure": pressure}
    if draw(st.booleans()):
        fields["device"] = device
    return device, json.dumps(fields).encode(), (device, utc, temp, pressure)


@st.composite
def bad_reading(draw) -> tuple[str, bytes, str | None]:
    kind = draw(st.sampled_from(["time", "value", "device", "bytes", "json"]))
    base = {"time": '"2024-01-01T05:00:00Z"', "temp": "20.5", "pressure": "1.5"}
    if kind == "time":
        text, reason = draw(st.sampled_from(BAD_TIMES))
        base["time"] = json.dumps(text)
    elif kind == "value":
        base["temp"], reason = draw(st.sampled_from(BAD_VALUES))
    elif kind == "device":
        base["device"], reason = '"someone-else"', "device_mismatch"
    if kind in ("time", "value", "device"):
        return "d1", ("{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}").encode(), reason
    if kind == "bytes":
        return "d1", draw(st.binary(max_size=40).filter(lambda b: b"time" not in b)), None
    junk = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5).filter(lambda k: k != "time"), inner, max_size=3),
                        max_leaves=8)  # fmt: skip
    return "d1", json.dumps(draw(junk)).encode(), None


@st.composite
def deliveries(draw) -> tuple[list[tuple[str, bytes, object]], list[int], list[bool]]:
    """Messages (some delivered twice), cut into batches, with an ingester restart before some batches."""
    messages = draw(st.lists(st.one_of(valid_reading(), bad_reading()), min_size=1, max_size=40))
    for again in draw(st.lists(st.integers(0, len(messages) - 1), max_size=10)):
        messages.insert(draw(st.integers(again + 1, len(messages))), messages[again])
    cuts = sorted(set(draw(st.lists(st.integers(1, len(messages)), max_size=6))) | {len(messages)})
    return messages, cuts, [draw(st.booleans()) for _ in cuts]


def land(root: Path, messages: list, cuts: list[int], restarts: list[bool]) -> tuple[Path, int]:
    """Land the messages batch by batch as the ingester does; returns the folder and the rows written."""
    fleet = Fleet(root / "fleet", root / "lake", root / "landing")
    profile, folder, written, start = fleet.write_profile(), root / "landing", 0, 0
    con = duckdb.connect()
    landing = MqttLanding(con, profile, folder, fanout=3, grace_seconds=3600)
    received = int((NOW - datetime(1970, 1, 1)) / timedelta(microseconds=1))
    for cut, restart in zip(cuts, restarts, strict=True):
        if restart:
            con.close()
            con = duckdb.connect()
            landing = MqttLanding(con, profile, folder, fanout=3, grace_seconds=3600)
        batch = [Message(i, received, f"fleets/tiny/{dev}/telemetry", raw, i, 1) for i, (dev, raw, _) in enumerate(messages[start:cut], start)]
        counts = landing.write_batch(batch)
        assert counts.received == len(batch) == counts.landed + counts.quarantined + counts.redelivered
        written += counts.landed + counts.quarantined
        landing.compact(counts.days)
        start = cut
    con.close()
    return folder, written


def on_disk(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = sorted({p for f in folder.rglob("*.part-*.parquet") for p in landing_parts(f.parent / (f.name.split(".part-")[0] + ".csv"))})
    valid = [pd.read_parquet(f) for f in files if "quarantine" not in f.parts]
    bad = [pd.read_parquet(f) for f in files if "quarantine" in f.parts]
    return (pd.concat(valid, ignore_index=True) if valid else pd.DataFrame(columns=["device", "time", "temp", "pressure"]),
            pd.concat(bad, ignore_index=True) if bad else pd.DataFrame(columns=["reason", "payload"]))  # fmt: skip


def expected(messages: list) -> tuple[dict, dict]:
    """What must be on disk, worked out without the ingester: first reading per key, every other message once."""
    valid, quarantined = {}, {}
    for device, raw, what in messages:
        key = (device, raw)  # a message's identity: the same bytes on the same topic
        if not isinstance(what, tuple):
            quarantined.setdefault(key, (raw, what))
        elif key not in quarantined:
            dev, utc, temp, pressure = what
            if (dev, utc) not in valid:
                valid[(dev, utc)] = (temp, pressure)
            elif valid[(dev, utc)] != (temp, pressure):
                quarantined[key] = (raw, "duplicate")
    return valid, quarantined


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_every_message_lands_once_with_its_true_time_and_reruns_are_byte_identical(case):
    messages, cuts, restarts = case
    want_valid, want_bad = expected(messages)
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        folder, written = land(Path(one), messages, cuts, restarts)
        valid, bad = on_disk(folder)
        assert written == len(valid) + len(bad) == len(want_valid) + len(want_bad)
        got = {(r.device, r.time.to_pydatetime()): (r.temp, r.pressure) for r in valid.itertuples()}
        assert len(got) == len(valid) and got == want_valid  # each reading once, at its UTC time, with its values
        assert Counter(bad["payload"]) == Counter(raw for raw, _ in want_bad.values())
        reasons = dict(zip(bad["payload"], bad["reason"], strict=True))
        assert all(reasons[raw] == reason for raw, reason in want_bad.values() if reason is not None)

        before = snapshot(folder)
        assert land(Path(one), messages, [len(messages)], [True])[1] == 0  # everything redelivered: nothing written
        assert snapshot(folder) == before
        assert snapshot(land(Path(two), messages, cuts, restarts)[0]) == before  # the same input lands the same bytes
