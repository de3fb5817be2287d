"""bench/drift.py at its CI size: every side agrees with ours and the key lines are printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["speedup_vs_evidently_stattests", "speedup_vs_evidently_report", "speedup_vs_evidently_stattests_with_reference",
        "reference_build_to_drift_ratio"]  # fmt: skip


@pytest.mark.slow
def test_drift_bench_tiny() -> None:
    proc = subprocess.run([sys.executable, "bench/drift.py", "--tiny", "--runs", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for key in KEYS:
        found = re.search(rf"^{key}: ([0-9.]+)$", proc.stdout, re.MULTILINE)
        assert found and float(found.group(1)) > 0, f"{key} missing or not positive:\n{proc.stdout}"
