"""Loading the definitions and the decision log's CLI needs none of the heavy libraries that train, plot or track."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "sklearn", "skops", "matplotlib", "scipy.stats", "evidently")


@pytest.mark.parametrize("code", [
    "import iot_mlops.definitions; iot_mlops.definitions.build_definitions()",
    "from iot_mlops.cli import app; sys.argv = ['iot-mlops', 'decisions']; app(standalone_mode=False)",
], ids=["definitions", "decisions"])
def test_heavy_libraries_load_where_they_are_used(code, tmp_path):
    probe = f"import json, sys; {code}; print('LOADED ' + json.dumps(sorted(m for m in {HEAVY} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "IOT_MLOPS_DATA_DIR": str(tmp_path)}).stdout
    loaded = json.loads(next(line for line in out.splitlines() if line.startswith("LOADED "))[len("LOADED "):])
    assert loaded == []
