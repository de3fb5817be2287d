"""MQTT ingestion against the local Mosquitto: quarantine, dedupe across restarts, parts the asset reads."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from iot_mlops.ingestion.cli import ingest_app
from iot_mlops.ingestion.mqtt import MqttIngester, MqttOptions, forget_session
from iot_mlops.ingestion.mqtt_landing import append_part, merge_parts, part_path, remove_superseded
from iot_mlops.ingestion.sources import day_files, landing_parts, source_files
from iot_mlops.profiles import FleetProfile, source_folder
from iot_mlops.sources.landing import simulator_for
from iot_mlops.sources.mqtt_publish import publish, publish_simulated, simulated_telemetry, sized
from iot_mlops_tests.fleet import DAYS, PROFILES, Fleet, clean_day, reading, stamp

BROKER = os.environ.get("IOT_MLOPS_TEST_MQTT", "127.0.0.1:1883")
HOST, PORT = BROKER.rsplit(":", 1)[0], int(BROKER.rsplit(":", 1)[1])
DAY = DAYS[0]


def today() -> date:
    return datetime.now(timezone.utc).date()


def broker_up() -> bool:
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    """The local Mosquitto; started with `service mosquitto start` when it is down, else a clear failure."""
    if not broker_up() and HOST in ("127.0.0.1", "localhost") and shutil.which("service"):
        subprocess.run(["service", "mosquitto", "start"], capture_output=True, timeout=30)
    assert broker_up(), f"no MQTT broker at {HOST}:{PORT}: start Mosquitto (service mosquitto start) or set IOT_MLOPS_TEST_MQTT=host:port"
    return HOST, PORT


@pytest.fixture
def mqtt_fleet(tmp_path: Path, broker) -> Iterator[Fleet]:
    """The synthetic fleet under a unique name (the broker is shared); its session is deleted afterwards."""
    fleet = Fleet(tmp_path / "fleet", tmp_path / "data" / "lake", tmp_path / "data" / "landing")
    fleet.spec["name"] = f"mqtt_{uuid.uuid4().hex[:10]}"
    fleet.write_profile()
    yield fleet
    forget_session(MqttOptions().client_for(fleet.name), HOST, PORT)


def folder_of(fleet: Fleet) -> Path:
    return source_folder(fleet.profile(), fleet.profile_dir, fleet.landing_root)


@contextmanager
def ingesting(profile: FleetProfile, folder: Path, log=lambda _: None, **options) -> Iterator[MqttIngester]:
    """An ingester on a thread, subscribed on entry; on exit it lands what arrived and stops once idle."""
    opts = MqttOptions(host=HOST, port=PORT, **{"flush_seconds": 0.2, "idle_timeout": 1.0, **options})
    ingester = MqttIngester(profile, folder, opts, log=log)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            ingester.run()
        except BaseException as error:  # re-raised on the test's thread below
            failure.append(error)
            ingester.ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ingester.ready.wait(30), "ingester did not subscribe"
    try:
        yield ingester
    finally:
        thread.join(60)
        if thread.is_alive():
            ingester.stop()
            thread.join(30)
    if failure:
        raise failure[0]


def payload(row: dict, **changes) -> bytes:
    """A reading's JSON payload; the device is in the topic, in the payload only when changed."""
    data = {k: v for k, v in row.items() if k != "device"}
    return json.dumps({**data, **changes}).encode()


def readings(day: date = DAY) -> list[tuple[str, bytes]]:
    return [(row["device"], payload(row)) for row in clean_day(day)]


def landed(folder: Path, day: date = DAY, table: str = "telemetry") -> pd.DataFrame:
    """The live parts of a day (telemetry or quarantine/telemetry), in one frame."""
    day_file = folder / ("quarantine/" if table != "telemetry" else "") / f"telemetry/{day.isoformat()}.csv"
    parts = landing_parts(day_file)
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()


BAD = [
    (b"not json", "unparsable_payload"),
    (b"\xff\xfe\x00", "payload_not_utf8"),
    (b"[1, 2]", "payload_not_object"),
    (payload(reading("d1", stamp(DAY, 3)), time=None), "missing_value:timestamp"),
    (payload(reading("d1", stamp(DAY, 3)), time="yesterday"), "unparsable_timestamp"),
    (payload(reading("d1", stamp(DAY, 3)), time="2023-12-31T23:00:00Z"), "timestamp_outside_partition"),
    (payload(reading("d1", stamp(DAY, 3)), temp="hot"), "non_numeric:temp"),
    (payload(reading("d1", stamp(DAY, 3)), temp=250), "out_of_range:temp"),
    (payload(reading("d1", stamp(DAY, 3)), pressure=None), "missing_value:pressure"),
    (payload(reading("d1", stamp(DAY, 3)), device="d2"), "device_mismatch"),
]


def test_bad_messages_go_to_quarantine_with_their_reason_and_raw_payload(mqtt_fleet: Fleet):
    folder = folder_of(mqtt_fleet)
    good = readings()
    with ingesting(mqtt_fleet.profile(), folder) as ingester:
        publish(mqtt_fleet.name, good[:30] + [("d1", raw) for raw, _ in BAD] + good[30:], HOST, PORT)
    assert (ingester.stats.received, ingester.stats.landed, ingester.stats.quarantined) == (len(good) + len(BAD), len(good), len(BAD))

    valid = landed(folder)
    assert sorted(zip(valid["device"], valid["time"].dt.strftime("%H"), strict=True)) == sorted((r["device"], r["time"][11:13]) for r in clean_day(DAY))
    assert valid["time"].dt.date.eq(DAY).all()
    bad = pd.concat([landed(folder, d, "quarantine") for d in {DAY, today()}], ignore_index=True)
    assert Counter(bad["reason"]) == Counter(reason for _, reason in BAD)
    by_reason = dict(zip(bad["reason"], bad["payload"], strict=True))
    assert all(by_reason[reason] == raw for raw, reason in BAD)
    assert set(bad["source_file"]) == {f"fleets/{mqtt_fleet.name}/d1/telemetry"}
    # Undecodable or unparsable messages have no timestamp of their own: they land on the day they arrived.
    assert bad.set_index("reason").loc["payload_not_utf8", "day"] == today()


def test_redelivered_and_repeated_messages_add_nothing_across_a_restart(mqtt_fleet: Fleet):
    folder = folder_of(mqtt_fleet)
    good = readings()
    with ingesting(mqtt_fleet.profile(), folder) as first:
        publish(mqtt_fleet.name, good + good[:10] + [("d1", b"not json")], HOST, PORT)
    assert (first.stats.landed, first.stats.redelivered, first.stats.quarantined) == (len(good), 10, 1)
    before = landed(folder)

    # A new ingester (a restart) knows what landed from the files alone.
    conflicting = payload(clean_day(DAY)[0], temp=99.0)
    with ingesting(mqtt_fleet.profile(), folder) as second:
        publish(mqtt_fleet.name, good + [("d1", b"not json"), ("d1", conflicting), ("d1", conflicting)], HOST, PORT)
    assert (second.stats.landed, second.stats.redelivered, second.stats.quarantined) == (0, len(good) + 2, 1)
    pd.testing.assert_frame_equal(landed(folder).sort_values(["device", "time"]).reset_index(drop=True),
                                  before.sort_values(["device", "time"]).reset_index(drop=True))  # fmt: skip
    bad = landed(folder, DAY, "quarantine")
    assert list(bad["reason"]) == ["duplicate"] and bad["payload"][0] == conflicting
    assert len(landed(folder, today(), "quarantine")) == 1  # the unparsable message, once


def test_messages_published_while_the_ingester_is_away_arrive_after_it_returns(mqtt_fleet: Fleet):
    folder = folder_of(mqtt_fleet)
    good = readings()
    with ingesting(mqtt_fleet.profile(), folder):
        publish(mqtt_fleet.name, good[:20], HOST, PORT)
    # The session outlives the ingester; Mosquitto queues up to max_queued_messages (1000 by default) for it.
    publish(mqtt_fleet.name, good[20:], HOST, PORT)
    with ingesting(mqtt_fleet.profile(), folder) as returned:
        pass
    assert returned.stats.session_present
    # The first ingester acknowledged what it landed before leaving: nothing comes twice.
    assert (returned.stats.landed, returned.stats.redelivered) == (len(good) - 20, 0)
    assert len(landed(folder)) == len(good)


def test_simulated_fleet_published_over_mqtt_lands_unchanged(tmp_path: Path, broker):
    from iot_mlops.profiles import load_profile

    name = f"mqtt_sim_{uuid.uuid4().hex[:8]}"
    profile = load_profile(PROFILES / "water_heaters.yaml").model_copy(update={"name": name})
    profile = sized(profile, 3)
    folder = source_folder(profile, PROFILES, tmp_path / "landing")
    day = profile.source.simulator.epoch
    try:
        with ingesting(profile, folder, max_batch=1000):
            sent = publish_simulated(profile, [day], host=HOST, port=PORT, landing=tmp_path / "landing")
    finally:
        forget_session(MqttOptions().client_for(name), HOST, PORT)
    expected = simulated_telemetry(simulator_for(profile), day).to_pandas()
    assert sent == len(expected) == 3 * 1440
    got = pd.concat([pd.read_parquet(p) for p in day_files(folder, profile.source.telemetry, day)], ignore_index=True)
    key = ["device_id", "timestamp"]
    got = got.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(key).reset_index(drop=True), check_dtype=False)
    # Events and the device table come as landing files, as a gateway uploads them.
    assert (folder / f"failures/date={day.isoformat()}/failures.parquet").is_file()
    assert (folder / "devices/devices.parquet").is_file()


def test_a_day_reads_its_file_then_its_live_parts(mqtt_fleet: Fleet):
    fleet = mqtt_fleet
    fleet.write("telemetry", clean_day(DAY)[:5], DAY)
    day_file = fleet.path("telemetry", DAY)
    spec = fleet.profile().source.telemetry
    con = duckdb.connect()
    rows = lambda n: f"SELECT 'd1' AS device, TIMESTAMP '2024-01-01 05:00:00' + INTERVAL (i) MINUTE AS time, 1.0 AS temp, 1.0 AS pressure FROM range({n}) t(i)"  # noqa: E731
    for _ in range(9):
        append_part(con, day_file, rows(2))
    assert len(landing_parts(day_file)) == 9
    assert merge_parts(con, day_file, "device, time", fanout=4) == 2  # 1-4 and 5-8 merged, 9 stays
    assert [p.name for p in landing_parts(day_file)] == [part_path(day_file, *r).name for r in ((1, 4), (5, 8), (9, 9))]
    # The covered parts stay for readers that listed them before the merge, but are skipped.
    assert len(landing_parts(day_file, live=False)) == 11
    files = source_files(fleet.source, spec, [DAY])
    assert [f.path for f in files] == [day_file, *landing_parts(day_file)]
    assert sum(pq.read_metadata(f.path).num_rows for f in files[1:]) == 18
    assert remove_superseded(day_file, grace_seconds=0) == 8
    assert len(landing_parts(day_file, live=False)) == 3
    assert day_files(fleet.source, spec, DAYS[1]) == []


def test_cli_fails_clearly(mqtt_fleet: Fleet, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IOT_MLOPS_PROFILES_DIR", str(mqtt_fleet.profile_dir))
    runner = CliRunner()
    result = runner.invoke(ingest_app, ["mqtt", "--fleet", "nope"])
    assert result.exit_code == 1 and "no fleet 'nope'" in result.output
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    result = runner.invoke(ingest_app, ["mqtt", "--fleet", mqtt_fleet.name, "--port", str(closed)])
    assert result.exit_code == 1 and f"cannot reach the MQTT broker at 127.0.0.1:{closed}" in result.output
    with ingesting(mqtt_fleet.profile(), folder_of(mqtt_fleet)):
        result = runner.invoke(ingest_app, ["mqtt", "--fleet", mqtt_fleet.name, "--host", HOST, "--port", str(PORT)])
    assert result.exit_code == 1 and "another MQTT ingester is running" in result.output


def test_an_ingester_that_keeps_losing_its_session_to_another_client_stops(mqtt_fleet: Fleet):
    from iot_mlops.ingestion.mqtt import MqttError, client_for, connect_properties

    other = client_for(MqttOptions().client_for(mqtt_fleet.name))
    other.reconnect_delay_set(0.05, 0.05)  # a second ingester somewhere else, as quick to reconnect
    with pytest.raises(MqttError, match="is another client connected as"):
        with ingesting(mqtt_fleet.profile(), folder_of(mqtt_fleet), idle_timeout=30):
            other.connect(HOST, PORT, clean_start=False, properties=connect_properties(10, 60))
            other.loop_start()
    other.disconnect()
    other.loop_stop()
