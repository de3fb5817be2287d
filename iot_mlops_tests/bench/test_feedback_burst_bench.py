"""bench/feedback_burst.py --tiny: every feedback post answered 201 and stored, and the key line printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.integration
def test_feedback_burst_bench_tiny():
    env = {**os.environ, "IOT_MLOPS_BENCH_PG": os.environ.get("IOT_MLOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")}
    proc = subprocess.run([sys.executable, "bench/feedback_burst.py", "--tiny", "--runs", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(r"^feedback_posts_per_s: ([0-9.]+)$", proc.stdout, re.MULTILINE)
    assert found, f"no feedback_posts_per_s line in:\n{proc.stdout[-3000:]}"
    assert float(found.group(1)) > 0
