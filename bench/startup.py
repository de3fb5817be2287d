"""Command-line start-up: loading the definitions and `iot-mlops decisions`, each in fresh processes.

Prints a table (median, min, max wall seconds of `--runs` processes after one warm-up), then `key: value`
lines, and which heavy libraries each command imported (none of them should need MLflow or scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from harness import ROOT

HEAVY = ("mlflow", "sklearn", "skops", "matplotlib", "scipy.stats", "evidently")
PROBE = "import json, sys; {code}; print('LOADED ' + json.dumps(sorted(m for m in {heavy} if m in sys.modules)))"
COMMANDS = {
    "definitions_load": "import iot_mlops.definitions",
    "decisions": "from iot_mlops.cli import app; sys.argv = ['iot-mlops', 'decisions']; app(standalone_mode=False)",
}


def run_once(code: str, env: dict[str, str]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    loaded = json.loads(next(line for line in out.splitlines() if line.startswith("LOADED "))[len("LOADED "):])
    return wall, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "IOT_MLOPS_DATA_DIR": data, "PYTHONPATH": str(ROOT)}
        rows = {}
        for name, code in COMMANDS.items():
            run_once(code, env)  # warm-up: compiled bytecode and the page cache
            results = [run_once(code, env) for _ in range(args.runs)]
            walls = [w for w, _ in results]
            rows[name] = (statistics.median(walls), min(walls), max(walls), results[-1][1])
    print(f"{'command':<18} {'median s':>9} {'min s':>7} {'max s':>7}  heavy libraries imported")
    for name, (median, low, high, loaded) in rows.items():
        print(f"{name:<18} {median:9.2f} {low:7.2f} {high:7.2f}  {', '.join(loaded) or 'none'}")
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    for name, (median, _, _, loaded) in rows.items():
        print(f"{name}_s: {median:.3f}")
        print(f"{name}_heavy_imports: {len(loaded)}")


if __name__ == "__main__":
    main()
