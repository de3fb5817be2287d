"""What the benchmarks share: each timed side runs in its own process, measured from inside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MB.

    Not getrusage's ru_maxrss inside the child: Linux carries the parent's peak over fork and
    exec into it, so a child of a big parent would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spawn_worker(script: str, side: str, case_name: str, case: dict, workdir: Path) -> dict:
    """Run `script --worker side` once in a fresh process; returns the JSON of its last RESULT line."""
    case_file = workdir / f"{case_name}.json"
    case_file.write_text(json.dumps(case))
    log = workdir / f"{case_name}.{side}.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, str(Path(script).resolve()), "--worker", side, "--case-file", str(case_file)],
            stdout=handle, stderr=subprocess.STDOUT, cwd=str(ROOT),
        )  # fmt: skip
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} worker for {case_name} failed (exit {proc.returncode}):\n{text[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])
