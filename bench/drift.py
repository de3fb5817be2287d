#!/usr/bin/env python
"""Benchmark: drift of 1,000,000 rows x 40 features, our one-pass DuckDB path vs Evidently 0.7.

Run on demand from the repository root (offline; nothing is downloaded):

    python bench/drift.py                  # full run: 1 M reference + 1 M current rows
    python bench/drift.py --tiny           # 20,000 rows (CI)
    python bench/drift.py --workdir /tmp/dr  # keep the data (regenerated only when the size or --seed change)

The data (written as zstd Parquet before anything is timed) look like a fleet's hourly features: device_id,
ts and 40 features: 36 numeric (12 normal, 8 log-normal, 6 Poisson counts, 6 two-mode mixtures, 4 exponential
"hours since") and 4 categorical. The current data are the reference's distributions drawn again, except 9
drifted features: mean +1 sd (n00), 20% of rows in other units (n01), sd x 2.5 (n02), +0.1 sd (n03: too small
for PSI, found by KS), flow x 1.5 (n12), count rate 0.3 -> 0.9 (n20), mixture weights 30/70 -> 70/30 (n26),
scale x 2 (n32), a firmware roll-out (c1: a new version on 30% of rows). KS decides n03, n04 and n05. At 1 M rows
every side also flags c0 (p 0.0009): the chi-square takes the reference's counts as the expected frequencies,
ignoring their own sampling noise, which roughly doubles the statistic when both sides are the same size.
The reference profile (deciles of its 5,000-row sample as PSI bins, exact counts) is built once, untimed,
before the sides run. Every side runs in fresh processes, the same number of times (harness.py); reads are timed:

* ours: ``compute_drift`` as the ``drift_report`` asset runs it: reads the profile JSON and the sample, then one
  DuckDB aggregate pass over current.parquet (counts per reference bin and category) plus its raw KS columns;
* evidently_stattests: pandas reads reference.parquet, current.parquet (the 40 features) and the sample's KS
  columns; the PSI columns are replaced by their reference bin numbers (``evidently_report.binned``, the bins of
  the profile: Evidently's PSI bins a column of at most 20 values by value, so it uses our bins instead of its
  Sturges bins); then Evidently's own ``psi_stat_test``, ``chi_stat_test`` and ``ks_stat_test``
  (legacy.calculations.stattests) per column, with our thresholds (PSI >= 0.2, chi-square p < 0.05,
  KS p <= 0.05) and KS, as ours, against the reference sample. Reference counts are recounted on every run;
* evidently_report: the same reads and binning, then ``Report([DataDriftPreset(...)]).run(current, reference)``
  with the same methods and thresholds (``evidently_report.run_evidently``); one reference data set for every
  column, so its KS reads the whole reference, not the sample;
* ours_reference: ``build_reference`` on reference.parquet (sample written, then one aggregate pass), what a new
  training dataset costs once; its profile must equal the one the others use (means and standard deviations
  within rtol 1e-9: DuckDB's parallel sums differ in the last bits from run to run).

Checked: every side's per-feature verdicts equal ours; the stattests side's PSI values and p-values equal ours
(the same counts and arrays: rtol 1e-6), the report's too except KS. Any difference exits 1 without the key
lines: ``speedup_vs_evidently_stattests`` and ``speedup_vs_evidently_report`` (their median over ours),
``speedup_vs_evidently_stattests_with_reference`` (stattests over ours plus a reference build) and
``reference_build_to_drift_ratio`` (a reference build's median over a drift run's).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from harness import finish, frame_problems, machine_line, measure, parser, run_worker, table

SIDES = ["ours", "evidently_stattests", "evidently_report", "ours_reference"]
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


def spec():
    from iot_mlops.profiles.monitoring import DriftSpec

    return DriftSpec(ks_features=KS)


def load_profile(case: dict):
    from iot_mlops.monitoring.reference import ReferenceProfile

    return ReferenceProfile.from_json(Path(case["profile"]).read_text())


def build(reference: str, profile: Path, sample: Path) -> str:
    """The reference profile of `reference` (its sample written to `sample`), also written to `profile`; its JSON."""
    from iot_mlops.lake import connect, sql_str
    from iot_mlops.monitoring.reference import build_reference

    with connect() as con:
        text = build_reference(con, f"read_parquet({sql_str(reference)})", kinds(), spec(), sample).to_json()
    profile.write_text(text)
    return text


def prepare_data(workdir: Path, rows: int, seed: int) -> dict:
    """Write reference.parquet and current.parquet (once per size and seed), and the profile the sides compare with."""
    import pyarrow.parquet as pq

    case = {"rows": rows, "seed": seed, **{k: str(workdir / f) for k, f in [
        ("reference", "reference.parquet"), ("current", "current.parquet"), ("profile", "reference_profile.json"),
        ("sample", "reference_sample.parquet"), ("rebuilt_profile", "rebuilt_profile.json"),
        ("rebuilt_sample", "rebuilt_sample.parquet")]}}  # fmt: skip
    stamp = workdir / "data.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == case):
        started = time.perf_counter()
        for path, drifted, offset in ((case["reference"], False, 0), (case["current"], True, 1)):
            pq.write_table(generate(rows, seed + offset, drifted), path, compression="zstd", row_group_size=122_880)
        build(case["reference"], Path(case["profile"]), Path(case["sample"]))
        stamp.write_text(json.dumps(case))
        print(f"prepared {rows:,} + {rows:,} rows and the reference profile in {time.perf_counter() - started:.1f} s")
    return case


def features_read(case: dict, profile) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current features read with pandas, PSI columns as reference bin numbers."""
    from iot_mlops.monitoring.evidently_report import binned

    features = list(kinds())
    return tuple(binned(pd.read_parquet(case[k], columns=features), profile, spec()) for k in ("reference", "current"))


def side_ours(case: dict) -> dict:
    from iot_mlops.lake import connect, sql_str
    from iot_mlops.monitoring.drift import compute_drift

    profile = load_profile(case)
    sample = pd.read_parquet(case["sample"])
    with connect() as con:
        result = compute_drift(con, f"read_parquet({sql_str(case['current'])})", profile, sample, spec())
    scores = {f.feature: f.statistic if f.method == "psi" else f.p_value for f in result.tested}
    return {"verdicts": result.verdicts(), "scores": scores}


def side_evidently_stattests(case: dict) -> dict:
    from evidently.legacy.calculations.stattests import chi_stat_test, ks_stat_test, psi_stat_test
    from evidently.legacy.core import ColumnType

    s = spec()
    reference, current = features_read(case, load_profile(case))
    sample = pd.read_parquet(case["sample"], columns=KS)
    verdicts, scores = {}, {}
    for name, kind in kinds().items():
        if name in KS:
            r = ks_stat_test(sample[name], current[name], ColumnType.Numerical, s.p_value)
        elif kind == "numeric":
            r = psi_stat_test(reference[name], current[name], ColumnType.Numerical, s.psi_threshold)
        else:
            r = chi_stat_test(reference[name], current[name], ColumnType.Categorical, s.p_value)
        verdicts[name], scores[name] = bool(r.drifted), float(r.drift_score)
    return {"verdicts": verdicts, "scores": scores}


def side_evidently_report(case: dict) -> dict:
    from iot_mlops.monitoring.evidently_report import run_evidently

    profile = load_profile(case)
    reference, current = features_read(case, profile)
    # Already binned: run_evidently's own binning (same_bins) would bin the bin numbers again.
    result = run_evidently(current, reference, profile, spec())
    return {"verdicts": result.verdicts, "scores": result.scores}


def side_ours_reference(case: dict) -> dict:
    return {"profile": build(case["reference"], Path(case["rebuilt_profile"]), Path(case["rebuilt_sample"]))}


SIDE_FUNCS = {"ours": side_ours, "evidently_stattests": side_evidently_stattests, "evidently_report": side_evidently_report,
              "ours_reference": side_ours_reference}


def prepare(side: str) -> None:
    """Untimed imports of what the side needs."""
    import duckdb  # noqa: F401
    import scipy.stats  # noqa: F401

    import iot_mlops.monitoring.drift  # noqa: F401
    import iot_mlops.monitoring.evidently_report  # noqa: F401

    if side.startswith("evidently"):
        import evidently  # noqa: F401
        import evidently.legacy.calculations.stattests  # noqa: F401
        import evidently.presets  # noqa: F401


def verdict_frame(result: dict, ks_scores: bool) -> pd.DataFrame:
    """Per feature: verdict and score (PSI, or p-value), KS scores left out unless `ks_scores`."""
    verdicts = result["verdicts"]
    return pd.DataFrame({"feature": list(verdicts), "drifted": list(verdicts.values()),
                         "score": [result["scores"][f] if ks_scores or f not in KS else float("nan") for f in verdicts]})


def profile_frame(text: str) -> pd.DataFrame:
    """A profile as one row per feature (lists as text), its top-level fields on every row."""
    raw = json.loads(text)
    top = {k: json.dumps(v) for k, v in raw.items() if k != "features"}
    rows = [{**top, **{k: json.dumps(v) if isinstance(v, list) else v for k, v in f.items()}} for f in raw["features"]]
    return pd.DataFrame(rows).astype({c: "float64" for c in ("mean", "std", "min", "max")})


def main() -> int:
    p = parser(__doc__, SIDES)
    p.add_argument("--rows", type=int, help="rows of the reference and of the current data (default 1,000,000; --tiny 20,000)")
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args()
    if args.worker:
        run_worker(SIDE_FUNCS, args.worker, args.case_file, prepare=prepare)
        return 0

    rows = args.rows or (20_000 if args.tiny else 1_000_000)
    temp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench_drift_")
    workdir = Path(args.workdir or temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    print(machine_line("drift", "duckdb", "pandas", "evidently", "scipy"))
    case = prepare_data(workdir, rows, args.seed)
    runs = measure(__file__, SIDES, case, workdir, runs=args.runs, label=f"{rows:,} rows")

    ours = runs["ours"].last
    problems = []
    for side in ("evidently_stattests", "evidently_report"):
        same_ks = side == "evidently_stattests"  # the report's KS reads the whole reference, ours the sample
        problems += frame_problems(verdict_frame(ours, same_ks), verdict_frame(runs[side].last, same_ks), ["feature"], side)
    used, rebuilt = (profile_frame(t) for t in (Path(case["profile"]).read_text(), runs["ours_reference"].last["profile"]))
    problems += frame_problems(used, rebuilt, ["name"], "ours_reference (rebuilt profile)", rtol=1e-9, atol=0)
    drifted = lambda side: sum(runs[side].last["verdicts"].values()) if side != "ours_reference" else "-"
    print()
    table(["side", "median s", "min s", "max s", "CPU s (median)", "peak MB", "drifted features"],
          [[s, r.median, min(r.seconds), max(r.seconds), statistics.median(r.cpu_seconds), round(r.peak), drifted(s)]
           for s, r in runs.items()])  # fmt: skip
    print(f"\n{rows:,} reference + {rows:,} current rows x {len(kinds())} features, {args.runs} runs per side; "
          f"drifted by ours: {', '.join(f for f, v in ours['verdicts'].items() if v)}")
    median = {s: r.median for s, r in runs.items()}
    code = finish(problems, {
        "speedup_vs_evidently_stattests": median["evidently_stattests"] / median["ours"],
        "speedup_vs_evidently_report": median["evidently_report"] / median["ours"],
        "speedup_vs_evidently_stattests_with_reference": median["evidently_stattests"] / (median["ours"] + median["ours_reference"]),
        "reference_build_to_drift_ratio": median["ours_reference"] / median["ours"],
    })
    if temp:
        temp.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
