"""bench/mqtt_ingest.py at its CI size, on a private Mosquitto: messages published during the outage, none lost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def key(stdout: str, name: str) -> float:
    found = re.search(rf"^{name}: ([0-9.]+)$", stdout, re.MULTILINE)
    assert found, f"no {name} line:\n{stdout}"
    return float(found.group(1))


@pytest.mark.slow
@pytest.mark.integration
def test_mqtt_bench_tiny() -> None:
    proc = subprocess.run([sys.executable, "bench/mqtt_ingest.py", "--tiny", "--runs", "1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert key(proc.stdout, "published_during_outage") > 0
    assert key(proc.stdout, "end_to_end_messages_per_second") > 0
    assert key(proc.stdout, "lost_messages") == 0
    assert key(proc.stdout, "duplicates") == 0
