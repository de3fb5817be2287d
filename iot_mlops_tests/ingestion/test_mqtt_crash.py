"""Kill the MQTT ingester at every step of landing a batch and restart it: every published message is on disk once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from iot_mlops.ingestion.mqtt_landing import STEPS
from iot_mlops.sources.mqtt_publish import publish
from iot_mlops_tests.fleet import Fleet, clean_day
from iot_mlops_tests.ingestion.mqtt_crash_child import CRASHED
from iot_mlops_tests.ingestion.test_mqtt import DAY, HOST, PORT, folder_of, landed, payload, readings, today

# (step, occurrence): the first batch writes a quarantine part then a valid part, so part 1 is quarantine, part 2 valid.
CRASHES = [("checked", 1), ("part_aside", 1), ("part_written", 1), ("part_aside", 2), ("part_written", 2),
           ("landed", 1), ("acked", 1), ("landed", 4), ("merged", 1)]  # fmt: skip


def stream() -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """Valid readings with bad messages and repeats among them; and the bad payloads, each to be quarantined once."""
    good, first = readings(), clean_day(DAY)[0]
    bad = [payload(first, temp=250), b"not json", payload(first, time="10000-01-01T00:00:00Z"), payload(first, temp=99.0)]
    messages = good[:2] + [("d1", bad[0])] + good[2:20] + [("d1", bad[1])] + good[:5] + good[20:40]
    messages += [("d1", bad[2]), ("d1", bad[3])] + good[40:] + [("d1", bad[1])]
    return messages, bad


def start(fleet: Fleet, log: Path, step: str = "none", nth: int = 0) -> subprocess.Popen:
    command = [sys.executable, "-m", "iot_mlops_tests.ingestion.mqtt_crash_child", str(fleet.profile_file), str(folder_of(fleet)), HOST, str(PORT), step, str(nth)]
    proc = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "ready:" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ingester did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def finish(proc: subprocess.Popen, log: Path) -> int:
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"ingester did not stop:\n{log.read_text()}")


def test_every_step_has_a_crash_case():
    assert {step for step, _ in CRASHES} == set(STEPS)


@pytest.mark.slow  # each case starts, kills and restarts an ingester process
@pytest.mark.parametrize(("step", "nth"), CRASHES, ids=[f"{s}-{n}" for s, n in CRASHES])
def test_a_crash_at_any_step_loses_nothing_and_lands_nothing_twice(mqtt_fleet: Fleet, tmp_path: Path, step: str, nth: int):
    folder = folder_of(mqtt_fleet)
    messages, bad = stream()
    first = start(mqtt_fleet, tmp_path / "first.log", step, nth)
    publish(mqtt_fleet.name, messages, HOST, PORT)
    assert finish(first, tmp_path / "first.log") == CRASHED, f"never reached {step} #{nth}:\n{(tmp_path / 'first.log').read_text()}"

    # The broker redelivers what the dead ingester had not acknowledged; the restart lands it, once.
    second = start(mqtt_fleet, tmp_path / "second.log")
    assert "session resumed" in (tmp_path / "second.log").read_text()
    assert finish(second, tmp_path / "second.log") == 0, (tmp_path / "second.log").read_text()

    valid = landed(folder).sort_values(["device", "time"]).reset_index(drop=True)
    expected = pd.DataFrame(clean_day(DAY)).assign(time=lambda f: pd.to_datetime(f["time"])).sort_values(["device", "time"])
    pd.testing.assert_frame_equal(valid, expected.reset_index(drop=True), check_dtype=False)
    quarantined = pd.concat([landed(folder, d, "quarantine") for d in {DAY, today()}], ignore_index=True)
    assert sorted(quarantined["payload"]) == sorted(bad)
    assert Counter(quarantined["reason"]) == Counter(["out_of_range:temp", "unparsable_payload", "unparsable_timestamp", "duplicate"])
