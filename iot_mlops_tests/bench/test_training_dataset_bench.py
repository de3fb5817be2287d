"""The training-dataset bench runs at its tiny size, every side agrees, and it prints its key lines."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_training_dataset_bench_tiny():
    proc = subprocess.run([sys.executable, "bench/training_dataset.py", "--tiny", "--runs", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for key in ("speedup_vs_polars", "speedup_vs_merge_asof"):
        match = re.search(rf"^{key}: ([0-9.]+)$", proc.stdout, re.MULTILINE)
        assert match, f"no {key} line in:\n{proc.stdout[-2000:]}"
        assert float(match.group(1)) > 0
