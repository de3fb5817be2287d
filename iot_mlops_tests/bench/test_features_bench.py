"""The feature benchmark at its tiny size: every side runs, outputs agree, the key lines are printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_features_bench_tiny():
    proc = subprocess.run([sys.executable, "bench/features.py", "--tiny", "--runs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for key in ("speedup_vs_polars", "speedup_vs_pandas"):
        match = re.search(rf"^{key}: ([0-9.]+)$", proc.stdout, re.MULTILINE)
        assert match, f"no {key} line in:\n{proc.stdout[-3000:]}"
        assert float(match.group(1)) > 0
