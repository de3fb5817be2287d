#!/usr/bin/env python
"""Benchmark: drift of 1,000,000 rows x 40 features, our fast path vs plain Evidently DataDriftPreset.

Run on demand from the repository root (offline; nothing is downloaded):

    python bench/drift.py                  # full run: 1 M reference + 1 M current rows (Evidently: minutes, GBs)
    python bench/drift.py --rows 100000    # quick run
    python bench/drift.py --workdir /tmp/dr  # keep the data (regenerated only when --rows or --seed change)

The data (prepared as Parquet before anything is timed) look like a fleet's hourly features:
device_id, ts and 40 features: 36 numeric (12 normal, 8 log-normal, 6 Poisson counts, 6 two-mode
mixtures, 4 exponential "hours since") and 4 categorical (model, firmware, region, tariff). The
current data are the reference's distributions drawn again, except 9 drifted features: mean +1 sd
(n00), 20% of rows in other units (n01: x * 1.8 + 32), sd x 2.5 (n02), +0.1 sd (n03: too small for
PSI, found by KS), flow x 1.5 (n12), count rate 0.3 -> 0.9 (n20), mixture weights 30/70 -> 70/30
(n26), scale x 2 (n32), and a firmware roll-out (c1: a new version on 30% of rows). KS decides
n03, n04 and n05 (n04 and n05 do not drift).

Three sides, each in a fresh process (bench/harness.py) that measures its own time (imports
excluded) and peak resident memory:

* ours_reference (timed separately: once per training dataset):
  ``iot_mlops.monitoring.reference.build_reference`` on the reference Parquet: the raw
  sample (5,000 rows), then one DuckDB aggregate pass for counts per bin and category and the moments;
* ours: ``iot_mlops.monitoring.drift.compute_drift`` of the current Parquet against that profile
  and sample, what the ``drift_report`` asset runs per day: one DuckDB aggregate pass (counts per
  reference bin and per category) plus the raw KS columns;
* evidently: pandas reads both Parquet files (timed apart), then
  ``Report([DataDriftPreset(num_method="psi", cat_method="chisquare", per-column "ks")]).run(current,
  reference)`` with our thresholds (PSI >= 0.2, p < 0.05), on all rows (no sampling).

Verdicts are compared per feature. Expected differences: Evidently's PSI bins raw values with
Sturges bins over both sides, ours uses the reference's decile bins; its KS reads the whole
reference, ours the 5,000-row sample. A difference is listed with both statistics and the run exits
with status 1, without the final ``speedup_vs_evidently: X.XX`` line (Evidently's run() time over
ours; the reference profile is not in it, its time is printed beside it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import peak_rss_mb, spawn_worker  # noqa: E402 - found through the sys.path entry above

SIDES = ("ours_reference", "ours", "evidently")
KS = ["n03", "n04", "n05"]
DRIFTED = {"n00", "n01", "n02", "n03", "n12", "n20", "n26", "n32", "c1"}
CATEGORIES = {"c0": ["AquaBasic-50", "AquaPro-80", "ThermaMax-120", "ThermaMax-200", "EcoHeat-X"],
              "c1": [f"fw-{i}" for i in range(1, 9)], "c2": ["north", "south", "east", "west"], "c3": ["flat", "peak", "green"]}


def generate(rows: int, seed: int, drifted: bool):
    """One data set of `rows` rows as an Arrow table (see the module docstring)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    devices = 1000
    cols: dict[str, object] = {
        "device_id": pa.array([f"WH-{1001 + i % devices}" for i in range(rows)]),
        "ts": pa.array((np.datetime64("2026-01-01T00:00") + (np.arange(rows) // devices).astype("timedelta64[h]")).astype("datetime64[us]")),
    }
    shift = lambda name, sd: (sd if drifted and name in DRIFTED else 0.0)
    for i in range(12):  # normal: temperatures, pressures
        name, mu, sd = f"n{i:02d}", 40.0 + 3 * i, 1.0 + i / 4
        scale = 2.5 if drifted and name == "n02" else 1.0
        x = rng.normal(mu + shift(name, {"n00": sd, "n03": 0.1 * sd}.get(name, 0.0)), sd * scale, rows)
        if drifted and name == "n01":
            recal = rng.random(rows) < 0.2
            x[recal] = x[recal] * 1.8 + 32
        cols[name] = x
    for i in range(12, 20):  # log-normal: flows, power
        cols[f"n{i:02d}"] = rng.lognormal(0.5 + i / 20, 0.5, rows) * (1.5 if drifted and i == 12 else 1.0)
    for i in range(20, 26):  # Poisson counts: errors in 24 h
        cols[f"n{i:02d}"] = rng.poisson(0.9 if drifted and i == 20 else 0.3, rows).astype("int64")
    for i in range(26, 32):  # two-mode mixtures: heating on or off
        first = rng.random(rows) < (0.7 if drifted and i == 26 else 0.3)
        cols[f"n{i:02d}"] = np.where(first, rng.normal(2.0, 0.3, rows), rng.normal(6.0 + i / 10, 0.8, rows))
    for i in range(32, 36):  # exponential: hours since maintenance
        cols[f"n{i:02d}"] = rng.exponential(200.0 * (2 if drifted and i == 32 else 1), rows)
    for name, values in CATEGORIES.items():
        p = np.linspace(1.0, 2.0, len(values))
        p /= p.sum()
        pick = rng.choice(len(values), rows, p=p)
        labels = np.array(values, dtype=object)[pick]
        if drifted and name == "c1":
            labels[rng.random(rows) < 0.3] = "fw-9"
        cols[name] = labels
    return pa.table(cols)


def kinds() -> dict[str, str]:
    return {**{f"n{i:02d}": "numeric" for i in range(36)}, **{c: "categorical" for c in CATEGORIES}}


def prepare(workdir: Path, rows: int, seed: int) -> dict:
    """Write reference.parquet and current.parquet once per (rows, seed)."""
    import pyarrow.parquet as pq

    case = {"rows": rows, "seed": seed, "reference": str(workdir / "reference.parquet"),
            "current": str(workdir / "current.parquet"), "profile": str(workdir / "reference_profile.json"),
            "sample": str(workdir / "reference_sample.parquet")}
    stamp = workdir / "data.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == case:
        return case
    started = time.perf_counter()
    for path, drifted, offset in ((case["reference"], False, 0), (case["current"], True, 1)):
        pq.write_table(generate(rows, seed + offset, drifted), path, compression="zstd", row_group_size=122_880)
    stamp.write_text(json.dumps(case))
    print(f"prepared {rows:,} + {rows:,} rows in {time.perf_counter() - started:.1f}s")
    return case


def spec():
    from iot_mlops.profiles.monitoring import DriftSpec

    return DriftSpec(ks_features=KS)


def worker(side: str, case: dict) -> dict:
    """Run one side once; returns its figures (time measured here, around the work only)."""
    import resource

    from iot_mlops.lake import connect, sql_str
    from iot_mlops.monitoring.reference import ReferenceProfile, build_reference

    out: dict = {}
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    if side == "ours_reference":
        started = time.perf_counter()
        with connect() as con:
            profile = build_reference(con, f"read_parquet({sql_str(case['reference'])})", kinds(), spec(), Path(case["sample"]))
        Path(case["profile"]).write_text(profile.to_json())
        out["seconds"] = time.perf_counter() - started
    elif side == "ours":
        import pandas as pd

        from iot_mlops.monitoring.drift import compute_drift

        started = time.perf_counter()
        profile = ReferenceProfile.from_json(Path(case["profile"]).read_text())
        sample = pd.read_parquet(case["sample"])
        with connect() as con:
            result = compute_drift(con, f"read_parquet({sql_str(case['current'])})", profile, sample, spec())
        out["seconds"] = time.perf_counter() - started
        out["verdicts"] = result.verdicts()
        out["stats"] = {f.feature: [f.method, f.statistic if f.method == "psi" else f.p_value] for f in result.features}
        out["share"] = result.share
    else:
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report

        from iot_mlops.monitoring.evidently_report import drift_preset, parse_snapshot

        started = time.perf_counter()
        features = list(kinds())
        reference = pd.read_parquet(case["reference"], columns=features)
        current = pd.read_parquet(case["current"], columns=features)
        out["load_seconds"] = time.perf_counter() - started
        definition = DataDefinition(numerical_columns=[f for f, k in kinds().items() if k == "numeric"],
                                    categorical_columns=list(CATEGORIES))
        started = time.perf_counter()
        snapshot = Report([drift_preset(features, spec())], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(reference, data_definition=definition))
        parsed = parse_snapshot(snapshot)
        out["seconds"] = time.perf_counter() - started
        out["verdicts"], out["stats"] = parsed.verdicts, {f: [parsed.methods[f], parsed.scores[f]] for f in parsed.scores}
    after = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    out["peak_mb"] = peak_rss_mb()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and of the current data")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--runs", type=int, default=3, help="runs of our sides (best time reported); Evidently runs once")
    parser.add_argument("--workdir", help="keep the data here (reused while --rows and --seed are unchanged)")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--case-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, json.loads(Path(args.case_file).read_text()))), flush=True)
        return 0

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_drift_"))
    workdir.mkdir(parents=True, exist_ok=True)
    case = prepare(workdir, args.rows, args.seed)
    runs = {side: [spawn_worker(__file__, side, "drift", case, workdir) for _ in range(args.runs if side != "evidently" else 1)]
            for side in SIDES}  # ours_reference first: the other two read its profile and sample
    best = {side: min(r["seconds"] for r in results) for side, results in runs.items()}
    peak = {side: max(r["peak_mb"] for r in results) for side, results in runs.items()}
    ours, theirs = runs["ours"][0], runs["evidently"][0]
    agree = [f for f in theirs["verdicts"] if theirs["verdicts"][f] == ours["verdicts"].get(f)]
    features = len(kinds())

    print(f"\n{'rows':>10} {'features':>8} {'reference s':>11} {'ours s':>7} {'evidently s':>11} {'(+ load s)':>10} "
          f"{'ref peak MB':>11} {'ours peak MB':>12} {'evid. peak MB':>13} {'verdicts agree':>14}")
    print(f"{args.rows:>10,} {features:>8} {best['ours_reference']:>11.2f} {best['ours']:>7.2f} {best['evidently']:>11.2f} "
          f"{theirs['load_seconds']:>10.2f} {peak['ours_reference']:>11.0f} {peak['ours']:>12.0f} {peak['evidently']:>13.0f} "
          f"{len(agree):>10}/{features}")
    print(f"cpu seconds: reference {runs['ours_reference'][0]['cpu_seconds']:.1f}, ours {ours['cpu_seconds']:.1f}, "
          f"evidently {theirs['cpu_seconds']:.1f}; drifted features: ours {sum(ours['verdicts'].values())} "
          f"(share {ours['share']:.3f}), evidently {sum(theirs['verdicts'].values())}")
    print(f"speedup including the reference profile: {best['evidently'] / (best['ours'] + best['ours_reference']):.2f}x")
    wrong = sorted((set(theirs["verdicts"]) | set(ours["verdicts"])) - set(agree))
    for f in wrong:
        print(f"  DIFFERENT {f}: ours {ours['stats'][f]} drifted={ours['verdicts'].get(f)}; "
              f"evidently {theirs['stats'].get(f)} drifted={theirs['verdicts'].get(f)}")
    if wrong:
        return 1
    print(f"speedup_vs_evidently: {best['evidently'] / best['ours']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
