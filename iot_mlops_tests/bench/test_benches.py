"""Every bench at its tiny size: each side runs, the outputs agree (a mismatch exits 1), the key lines are printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POSITIVE = {
    "features": ["speedup_vs_polars", "speedup_vs_pandas"],
    "training_dataset": ["speedup_vs_polars", "speedup_vs_merge_asof"],
    "drift": ["speedup_vs_evidently_stattests", "speedup_vs_evidently_report",
              "speedup_vs_evidently_stattests_with_reference", "reference_build_to_drift_ratio"],
    "startup": ["definitions_load_seconds", "decisions_seconds"],
    "serving": ["throughput_vs_fastapi_sklearn", "p99_vs_fastapi_sklearn_c1", "throughput_vs_mlflow_serve",
                "predictions_vs_mlflow_serve_25"],
    "feedback_burst": ["feedback_posts_per_s"],
    "mqtt_ingest": ["published_during_outage", "end_to_end_messages_per_second"],  # the outage really overlapped publishing
}
ZERO = {"mqtt_ingest": ["lost_messages", "duplicates"]}
NEEDS_SERVICES = {"serving", "feedback_burst", "mqtt_ingest"}  # Postgres, or a private Mosquitto


def key(stdout: str, name: str) -> float:
    found = re.search(rf"^{name}: ([0-9.]+)$", stdout, re.MULTILINE)
    assert found, f"no {name} line in:\n{stdout[-3000:]}"
    return float(found.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("bench", [pytest.param(b, marks=[pytest.mark.integration] if b in NEEDS_SERVICES else [])
                                   for b in POSITIVE])
def test_bench_at_tiny_size(bench: str) -> None:
    env = {**os.environ, "IOT_MLOPS_BENCH_PG": os.environ.get("IOT_MLOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")}
    proc = subprocess.run([sys.executable, f"bench/{bench}.py", "--tiny", "--runs", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert all(key(proc.stdout, name) > 0 for name in POSITIVE[bench])
    assert all(key(proc.stdout, name) == 0 for name in ZERO.get(bench, []))
