"""100,000 messages through the MQTT ingester, killed with SIGKILL mid-stream and restarted, then the telemetry asset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from iot_mlops.ingestion.assets import ACCOUNTED
from iot_mlops.ingestion.sources import landing_parts
from iot_mlops.sources.mqtt_publish import publish
from iot_mlops_tests.fleet import Fleet, check_results, stamp
from iot_mlops_tests.ingestion.test_mqtt import DAY, HOST, PORT, folder_of, landed, today

DEVICES = [f"p{i:03d}" for i in range(70)]
VALID, BAD_EVERY = 99_000, 100  # 99,000 readings and 1,000 bad messages, one in every 100
BAD_KINDS = ["unparsable_payload", "out_of_range:temp", "non_numeric:pressure", "missing_value:timestamp", "unparsable_timestamp"]


def reading(n: int) -> tuple[str, dict]:
    """The n-th reading in time order: every device once a minute."""
    minute, device = divmod(n, len(DEVICES))
    ts = stamp(DAY) + timedelta(minutes=minute)
    return DEVICES[device], {"time": ts.isoformat() + "Z", "temp": 20.0 + (7 * device + minute) % 50 + 0.25, "pressure": 1.0 + (device + minute) % 8 * 0.5}


def bad(i: int) -> tuple[str, bytes, str]:
    device, row = reading(i)
    kind = BAD_KINDS[i % len(BAD_KINDS)]
    changes = {
        "out_of_range:temp": {"temp": 1000 + i},
        "non_numeric:pressure": {"pressure": f"high-{i}"},
        "missing_value:timestamp": {"time": None, "temp": i},
        "unparsable_timestamp": {"time": f"soon-{i}"},
    }
    raw = f"garbage {i}".encode() if kind == "unparsable_payload" else json.dumps({**row, **changes[kind]}).encode()
    return device, raw, kind


def stream() -> list[tuple[str, bytes]]:
    messages, bad_count = [], 0
    for n in range(VALID):
        device, row = reading(n)
        messages.append((device, json.dumps(row).encode()))
        if len(messages) % BAD_EVERY == BAD_EVERY - 1:
            device, raw, _ = bad(bad_count)
            messages.append((device, raw))
            bad_count += 1
    assert len(messages) == 100_000
    return messages


@pytest.fixture
def ingesters(mqtt_fleet: Fleet) -> Iterator[list[subprocess.Popen]]:
    """Ingester processes started by the test, killed if still running at the end."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def start_ingester(fleet: Fleet, log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "IOT_MLOPS_PROFILES_DIR": str(fleet.profile_dir)}
    command = [sys.executable, "-m", "iot_mlops.ingestion.cli", "mqtt", "--fleet", fleet.name, "--host", HOST, "--port", str(PORT), *args]
    proc = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while "ready:" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, f"ingester did not start:\n{log.read_text()}"
        time.sleep(0.05)
    return proc


def rows_on_disk(folder: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in landing_parts(folder / f"telemetry/{DAY.isoformat()}.csv"))


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.slow
def test_100k_messages_land_exactly_once_across_a_killed_ingester(mqtt_fleet: Fleet, ingesters, tmp_path: Path):
    fleet = mqtt_fleet
    fleet.spec["sampling_interval"] = "1min"
    fleet.write_profile()
    fleet.write("devices", [{"device": d, "model": "m0", "age": 3} for d in DEVICES])
    folder = folder_of(fleet)
    messages = stream()
    half = len(messages) // 2

    # Large, slow flushes: when the kill comes, some messages are on disk and more are buffered, unacknowledged.
    ingesters.append(start_ingester(fleet, tmp_path / "first.log", "--flush-seconds", "2", "--max-batch", "20000"))
    publish(fleet.name, messages[:half], HOST, PORT)
    wait_for(lambda: rows_on_disk(folder) > 0, 60, "a first flush")
    ingesters[0].send_signal(signal.SIGKILL)
    ingesters[0].wait(30)
    at_kill = rows_on_disk(folder)
    first_half_valid = half - half // BAD_EVERY
    assert 0 < at_kill < first_half_valid, "the kill did not come mid-stream"

    # The broker redelivers what the killed ingester had not acknowledged, to the same session.
    ingesters.append(start_ingester(fleet, tmp_path / "second.log", "--flush-seconds", "0.5", "--idle-timeout", "3"))
    assert "session resumed" in (tmp_path / "second.log").read_text()
    # Mosquitto keeps at most max_queued_messages for a client that lags behind: let the backlog drain first.
    wait_for(lambda: rows_on_disk(folder) == first_half_valid, 60, "the redelivered backlog")
    publish(fleet.name, messages[half:], HOST, PORT)
    assert ingesters[1].wait(120) == 0, (tmp_path / "second.log").read_text()

    valid = landed(folder)
    expected = pd.DataFrame([{"device": d, **r} for d, r in map(reading, range(VALID))])
    expected["time"] = pd.to_datetime(expected["time"].str.rstrip("Z"))
    key = ["device", "time"]
    assert len(valid) == VALID and not valid.duplicated(key).any()
    pd.testing.assert_frame_equal(valid.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True), check_dtype=False)

    quarantined = pd.concat([landed(folder, d, "quarantine") for d in {DAY, today()}], ignore_index=True)
    assert len(quarantined) == 1000 and quarantined["payload"].is_unique
    assert Counter(quarantined["reason"]) == Counter(bad(i)[2] for i in range(1000))
    assert set(quarantined["payload"]) == {bad(i)[1] for i in range(1000)}

    # The telemetry asset reads the parts as they are: every landed reading, nothing quarantined.
    result = fleet.materialize("devices", "telemetry", day=DAY)
    assert result.success
    assert check_results(result)[("telemetry", ACCOUNTED)].passed
    lake = fleet.read("telemetry", DAY).rename(columns={"device_id": "device", "ts": "time"})
    pd.testing.assert_frame_equal(lake.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert len(fleet.read("quarantine/telemetry", DAY)) == 0
