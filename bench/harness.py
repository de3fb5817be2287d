"""What every benchmark shares: sides in fresh processes, median of the same repetitions, one table, key lines, equality.

A bench script defines its sides as functions `side(case) -> dict` (the dict holds at least `out`, a path or value
the check compares) and calls `main(...)`. Each run of a side is a fresh `python bench/X.py --worker SIDE` process
that times its own work (imports excluded) and reports CPU seconds and its own peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
AZURE_DIR = Path(os.environ.get("IOT_MLOPS_AZURE_PDM_DIR") or ROOT.parent / "shared" / "datasets" / "azure_pdm")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MB.

    Not getrusage's ru_maxrss: Linux carries the parent's peak over fork and exec, so a child of a big parent
    would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def fsync_tree(path: Path) -> None:
    """Flush every file below `path` (and the folders) to disk, for sides that do not fsync on their own."""
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class Runs:
    """Every run of one side in one case."""

    side: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    last: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak(self) -> float:
        return max(self.peak_mb)


def spawn(script: str, side: str, case: dict, workdir: Path, python: str = sys.executable) -> dict:
    """Run `script --worker side` once in a fresh process of `python`; returns the JSON of its last RESULT line."""
    case_file = workdir / f"case.{side}.json"
    case_file.write_text(json.dumps(case, default=str))
    log = workdir / f"{side}.log"
    with open(log, "w") as handle:
        proc = subprocess.run([python, str(Path(script).resolve()), "--worker", side, "--case-file", str(case_file)],
                              stdout=handle, stderr=subprocess.STDOUT, cwd=str(ROOT))  # fmt: skip
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"side {side} failed (exit {proc.returncode}):\n{text[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run_worker(sides: dict[str, Callable[[dict], dict]], side: str, case_file: str, prepare: Callable[[str], None] | None = None) -> None:
    """Inside the worker: import what the side needs (untimed), run it once timed, print its RESULT line."""
    case = json.loads(Path(case_file).read_text())
    if prepare:
        prepare(side)
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = sides[side](case)
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    result.update(seconds=seconds, peak_mb=peak_rss_mb(),
                  cpu_seconds=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))  # fmt: skip
    print("RESULT " + json.dumps(result, default=str), flush=True)


def measure(script: str, sides: list[str], case: dict, workdir: Path, runs: int = 3,
            before_each: Callable[[str], None] | None = None, label: str = "",
            pythons: dict[str, str] | None = None) -> dict[str, Runs]:  # fmt: skip
    """Every side `runs` times, in turn (A B C A B C ...), so a drift in the machine's speed hits all alike.

    `pythons` names another interpreter for a side whose library cannot share our venv."""
    results = {side: Runs(side) for side in sides}
    for i in range(runs):
        for side in sides:
            if before_each:
                before_each(side)
            r = spawn(script, side, case, workdir, (pythons or {}).get(side, sys.executable))
            res = results[side]
            res.seconds.append(r["seconds"])
            res.cpu_seconds.append(r["cpu_seconds"])
            res.peak_mb.append(r["peak_mb"])
            res.last = r
            print(f"  {label:<14} run {i + 1}/{runs} {side:<18} {r['seconds']:8.2f} s (CPU {r['cpu_seconds']:7.2f} s) "
                  f"peak {r['peak_mb']:7.0f} MB", flush=True)  # fmt: skip
    return results


def frame_problems(ours, theirs, keys: list[str], name: str, rtol: float = 1e-6, atol: float = 1e-6) -> list[str]:
    """Differences between two DataFrames as sentences (empty when equal): rows by `keys`, columns, values within tolerance."""
    import numpy as np

    problems = []
    if set(ours.columns) != set(theirs.columns):
        problems.append(f"{name}: columns only in ours {sorted(set(ours.columns) - set(theirs.columns))}, "
                        f"only in theirs {sorted(set(theirs.columns) - set(ours.columns))}")  # fmt: skip
    ours = ours.sort_values(keys, kind="stable").reset_index(drop=True)
    theirs = theirs.sort_values(keys, kind="stable").reset_index(drop=True)
    if len(ours) != len(theirs) or not all((ours[k].to_numpy() == theirs[k].to_numpy()).all() for k in keys):
        a, b = set(map(tuple, ours[keys].to_numpy().tolist())), set(map(tuple, theirs[keys].to_numpy().tolist()))
        return problems + [f"{name}: rows differ: ours {len(ours):,}, theirs {len(theirs):,}; only in ours {len(a - b):,} "
                           f"(e.g. {sorted(a - b)[:2]}), only in theirs {len(b - a):,} (e.g. {sorted(b - a)[:2]})"]  # fmt: skip
    for col in [c for c in ours.columns if c in theirs.columns and c not in keys]:
        x, y = ours[col], theirs[col]
        if x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            bad = ~np.isclose(x.to_numpy("float64"), y.to_numpy("float64"), rtol=rtol, atol=atol, equal_nan=True)
        else:
            bad = ~((x == y) | (x.isna() & y.isna())).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problems.append(f"{name}: column {col}: {int(bad.sum()):,} of {len(x):,} differ, e.g. "
                            f"{ours.loc[i, keys].tolist()}: ours {x.iloc[i]!r}, theirs {y.iloc[i]!r}")  # fmt: skip
    return problems


def table(headers: list[str], rows: list[list]) -> None:
    """Print a plain aligned table."""
    cells = [[f"{c:,.2f}" if isinstance(c, float) else f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def machine_line(name: str, *modules: str) -> str:
    """One line naming the machine and the versions of the libraries in the race."""
    import importlib.metadata as md

    versions = ", ".join(f"{m} {md.version(m)}" for m in modules)
    return f"{name}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}, {versions}"


def parser(doc: str, sides: list[str]) -> argparse.ArgumentParser:
    """The options every bench has: --tiny (what CI runs), --runs, --workdir, and the hidden worker flags."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a seconds-long run at a toy size (CI runs this)")
    p.add_argument("--runs", type=int, default=3, help="runs of every side; the median is reported (default 3)")
    p.add_argument("--workdir", help="keep inputs and outputs here instead of a temporary folder")
    p.add_argument("--worker", choices=sides, help=argparse.SUPPRESS)
    p.add_argument("--case-file", help=argparse.SUPPRESS)
    return p


def finish(problems: list[str], keys: dict[str, float]) -> int:
    """Print the key lines when every side agreed; otherwise the problems, and exit 1 without them."""
    if problems:
        print("\nMISMATCH between sides:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    for key, value in keys.items():
        print(f"{key}: {value:.2f}")
    return 0


@contextmanager
def workdir(args: argparse.Namespace, name: str):
    """The --workdir folder (kept), or a temporary one removed afterwards."""
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        yield Path(args.workdir)
        return
    path = Path(tempfile.mkdtemp(prefix=f"bench_{name}_"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
