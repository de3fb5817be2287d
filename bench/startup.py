"""Command-line start-up: loading the definitions and `iot-mlops decisions`, each in fresh processes.

Prints a table (median, min, max wall seconds of `--runs` processes after one warm-up, and which heavy libraries
each command imported: none of them should need MLflow or scikit-learn), then the key lines
`definitions_load_seconds` and `decisions_seconds` (medians). `--runs` defaults to 5, to 1 with `--tiny`; the
harness's workdir and worker options are unused.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from harness import ROOT, finish, machine_line, parser, table

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


def main() -> int:
    p = parser(__doc__, [])
    p.set_defaults(runs=None)
    args = p.parse_args()
    args.runs = args.runs or (1 if args.tiny else 5)
    print(machine_line("startup", "dagster", "typer"))
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "IOT_MLOPS_DATA_DIR": data, "PYTHONPATH": str(ROOT)}
        rows = {}
        for name, code in COMMANDS.items():
            run_once(code, env)  # warm-up: compiled bytecode and the page cache
            results = [run_once(code, env) for _ in range(args.runs)]
            walls = [w for w, _ in results]
            rows[name] = (statistics.median(walls), min(walls), max(walls), results[-1][1])
    table(["command", "median s", "min s", "max s", "heavy libraries imported"],
          [[name, median, low, high, ", ".join(loaded) or "none"] for name, (median, low, high, loaded) in rows.items()])
    print(f"{args.runs} runs per command after one warm-up")
    return finish([], {f"{name}_seconds": median for name, (median, *_) in rows.items()})


if __name__ == "__main__":
    sys.exit(main())
