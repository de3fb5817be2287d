"""bench/serving.py --tiny: every side serves, the answers agree, and the key lines are printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["throughput_vs_fastapi_sklearn", "p99_vs_fastapi_sklearn_c1", "throughput_vs_mlflow_serve",
        "predictions_vs_mlflow_serve_25"]


@pytest.mark.slow
@pytest.mark.integration
def test_serving_bench_tiny():
    env = {**os.environ, "IOT_MLOPS_BENCH_PG": os.environ.get("IOT_MLOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")}
    proc = subprocess.run([sys.executable, "bench/serving.py", "--tiny", "--runs", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for key in KEYS:
        found = re.search(rf"^{key}: ([0-9.]+)$", proc.stdout, re.MULTILINE)
        assert found, f"no {key} line in:\n{proc.stdout[-3000:]}"
        assert float(found.group(1)) > 0
