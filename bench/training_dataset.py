#!/usr/bin/env python
"""Benchmark: the point-in-time join that builds a training dataset, ours against Polars, pandas and Feast.

    python bench/training_dataset.py                 # full run (CI runs --tiny --runs 1)
    python bench/training_dataset.py --feast-python /work/feastvenv/bin/python   # also Feast

The join: each complete, in-service label row in the labelled window gets the newest feature row of its device at
or before the label time, if that row is at most the profile's `features.max_age` old (else the label is dropped),
plus the split (train / validation / test, with horizon gaps) of the label time. Every side reads the same lake
Parquet partitions (labels and features) and writes one zstd Parquet file sorted by (ts, device_id) with the same
columns: device_id, ts, feature_ts, split, the targets, the feature columns.

* ours: `iot_mlops.training.dataset.build_dataset` as the training_dataset asset calls it: Polars reads the
  partitions, checks that the labels carry `out_of_service`, finds the labelled window, `join_asof`s and sorts on
  the keys alone (the feature columns gathered once after), assigns the split, writes (zstd) atomically (it fsyncs
  the file itself), then the fingerprint (sha256 of the file), the per-split counts and the manifest.
* polars: `read_parquet` of the partitions, label filter, `join_asof(by="device_id", strategy="backward",
  tolerance=max_age)`, unmatched dropped, split assigned, sorted, `write_parquet(compression="zstd")`, fsynced.
* merge_asof: pandas: pyarrow read, `pd.merge_asof(by="device_id", direction="backward", tolerance=max_age)`,
  unmatched dropped, split assigned, sorted, written with pyarrow (zstd), fsynced.
* feast: Feast's `get_historical_features` with its DuckDB offline store (an inequality join on the TTL window,
  newest row kept by row_number), a FileSource over the same feature partitions, `ttl=max_age`; the feature
  view is registered before the clock starts (as a deployed feature repo is); the labels are read into the entity
  frame, the result converted to Arrow, unmatched rows dropped, split assigned, sorted, written (zstd), fsynced.
  Feast maps the source's `ts` to `feature_ts` (a FileSource field mapping) so the matched row's time comes out.
  Feast runs in its own virtualenv (its pins clash with the project's): only with `--feast-python PATH`; CI
  runs without it. The Feast venv's DuckDB and pyarrow versions may differ from the project's.
  Feast's file (Dask) offline store is not raced: by its code (`_merge` before `_filter_ttl`) it joins every label to
  every feature row of its device before the TTL filter, about 1 billion rows for water_heaters.

The other sides take the window and split boundaries from the project's `split_boundaries`, computed before the
clock starts; ours computes them itself, and the run checks that they agree. Reads, the join, the sort and the
write are timed for every side; only ours also fingerprints and counts (the asset's work).

Cases, prepared untimed with the project's own functions:

* azure_pdm: the real data set (/work/shared/datasets/azure_pdm, or IOT_MLOPS_AZURE_PDM_DIR) ingested into a
  temporary lake (`ingest_devices / ingest_telemetry / ingest_events`, `compute_features`, 3-h step); the labels
  are entity rows every hour per machine (two in three off the feature grid), labelled by `labels_sql`, the rule
  `compute_labels` runs.
* water_heaters: the simulator (1,000 heaters x 30 days of 1-minute telemetry, landed by `ensure_days`; one heater
  in ten silent for 2-8 hours once, so some features are older than max_age), ingested, `compute_features`
  (1-h step); labels: entity rows every 30 minutes per heater, one heater in four on the clock (rows exactly on a
  feature time, or exactly max_age after one), the others at their own second offset, labelled by `labels_sql`.

Outputs are compared with `harness.frame_problems` (keys device_id, ts; every column). Key lines:
`speedup_vs_polars` and `speedup_vs_merge_asof`, the smaller over the two cases of the side's median over ours.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AZURE_DIR, ROOT, finish, frame_problems, fsync_tree, machine_line, measure, parser, run_worker, table, workdir  # noqa: E402

SIDES = ["ours", "polars", "merge_asof", "feast"]
PROFILES = ROOT / "profiles"
KEYS = ["device_id", "ts"]


# ------------------------------------------------------------------------------------------------ cases (untimed)


def entity_labels(con, lake, profile, entity_sql: str, days: list) -> None:
    """Replace the lake's labels with the project's labels (labels_sql) of the entity rows, a partition per day."""
    from iot_mlops.lake import sql_str
    from iot_mlops.training.labels import events_coverage, events_start, labels_sql

    fleet = profile.name
    coverage, since, events = events_coverage(lake, fleet), events_start(lake, fleet), lake.scan(fleet, "events")
    con.execute(f"CREATE OR REPLACE TEMP TABLE entity_rows AS {entity_sql}")
    shutil.rmtree(lake.table_dir(fleet, "labels"), ignore_errors=True)
    for day in days:
        rows = (f"(SELECT device_id, ts FROM entity_rows WHERE ts >= TIMESTAMP {sql_str(day)} "
                f"AND ts < TIMESTAMP {sql_str(day + timedelta(days=1))})")  # fmt: skip
        lake.write_partition(con, fleet, "labels", day, labels_sql(profile, rows, events, coverage, since))
    con.execute("DROP TABLE entity_rows")


def ingest(con, lake, profile, folder: Path, days: list) -> None:
    from iot_mlops.ingestion.ingest import ingest_devices, ingest_events, ingest_telemetry

    ingest_devices(con, lake, profile, folder)
    ingest_telemetry(con, lake, profile, folder, days)
    ingest_events(con, lake, profile, folder, days)


def build_azure(workdir: Path, n_days: int | None) -> tuple:
    """The real Azure PdM data ingested, its features; hourly entity rows per machine as labels."""
    from iot_mlops.features import compute_features
    from iot_mlops.lake import Lake, connect
    from iot_mlops.partitions import last_source_day
    from iot_mlops.profiles import load_profile, source_folder

    os.environ.setdefault("IOT_MLOPS_AZURE_PDM_DIR", str(AZURE_DIR))  # what the profile's source path reads
    profile = load_profile(PROFILES / "azure_pdm.yaml")
    folder = source_folder(profile, PROFILES, workdir / "landing")
    last, first = last_source_day(profile, folder), profile.partitions.start
    if last is None:
        raise SystemExit(f"azure_pdm: no telemetry under {folder} (set IOT_MLOPS_AZURE_PDM_DIR)")
    days = [first + timedelta(days=i) for i in range(n_days or (last - first).days + 1)]
    lake = Lake(workdir / "azure_pdm")
    with connect() as con:
        ingest(con, lake, profile, folder, days)
        compute_features(con, lake, profile, days)
        telemetry = lake.scan(profile.name, "telemetry")
        t0, t1 = con.execute(f"SELECT min(ts), max(ts) FROM {telemetry}").fetchone()
        entity_labels(con, lake, profile, f"SELECT d.device_id, CAST(s.ts AS TIMESTAMP) AS ts FROM (SELECT DISTINCT device_id "
                      f"FROM {telemetry}) d, generate_series(TIMESTAMP '{t0}', TIMESTAMP '{t1}', INTERVAL 1 HOUR) s(ts)", days)  # fmt: skip
    return profile, lake, PROFILES / "azure_pdm.yaml", "every hour per machine"


def build_water_heaters(workdir: Path, devices: int, n_days: int, every_minutes: int) -> tuple:
    """Simulated heaters landed and ingested (with outages), their features; entity rows as labels."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from iot_mlops.features import compute_features
    from iot_mlops.lake import Lake, connect, parquet, sql_str
    from iot_mlops.profiles import load_profile, source_folder
    from iot_mlops.sources.landing import ensure_days

    profile = load_profile(PROFILES / "water_heaters.yaml")
    spec = profile.source.simulator.model_copy(update={"devices": devices})
    profile = profile.model_copy(update={"source": profile.source.model_copy(update={"simulator": spec}),
                                         "partitions": profile.partitions.model_copy(update={"start": spec.epoch})})  # fmt: skip
    folder = source_folder(profile, PROFILES, workdir / "landing")
    days = [profile.source.simulator.epoch + timedelta(days=i) for i in range(n_days)]
    ensure_days(profile, folder, days, now=datetime(2100, 1, 1))
    for i, day in enumerate(days):  # one heater in ten silent for 2, 4, 6 or 8 hours once, on a day and hour of its own
        path = folder / profile.source.telemetry.path.format(date=day.isoformat())
        t = pq.read_table(path)
        num = pc.cast(pc.utf8_slice_codeunits(t["device_id"], 3), "int64").to_numpy()  # WH-1001 -> 1001
        hour = pc.hour(t["timestamp"]).to_numpy()
        start = (num * 7) % 14
        pq.write_table(t.filter(~((num % 10 == 0) & ((num // 10) % n_days == i) & (hour >= start) & (hour < start + 2 + num % 8))),
                       path, compression="zstd")  # fmt: skip
    lake = Lake(workdir / "water_heaters")
    with connect() as con:
        ingest(con, lake, profile, folder, days)
        compute_features(con, lake, profile, [*days, days[-1] + timedelta(days=1)])  # the last hour is labelled the next midnight
        step, t0 = every_minutes * 60, datetime.combine(days[0], datetime.min.time())
        num = "CAST(substr(device_id, 4) AS INTEGER)"  # WH-1001 -> 1001
        phase = f"CASE WHEN {num} % 4 = 0 THEN 0 ELSE ({num} * 37) % {step} END"
        entity_labels(con, lake, profile, f"SELECT device_id, TIMESTAMP {sql_str(t0)} + to_seconds(CAST(s.i * {step} + {phase} AS BIGINT)) "
                      f"AS ts FROM {parquet(lake.table_file(profile.name, 'devices'))}, "
                      f"range({n_days * 86400 // step}) s(i)", days)  # fmt: skip
    return profile, lake, PROFILES / "water_heaters.yaml", f"every {every_minutes} min per heater, one in four on the clock"


def describe(name: str, built: tuple, workdir: Path) -> dict:
    """The case as the sides see it: input files, window, split boundaries (as build_dataset computes them)."""
    from dataclasses import asdict

    from iot_mlops.lake import connect
    from iot_mlops.training.dataset import TABLE, split_boundaries
    from iot_mlops.training.labels import label_column

    profile, lake, profile_path, entities = built
    fleet = profile.name
    labels, features = lake.scan(fleet, "labels"), lake.scan(fleet, "features")
    with connect() as con:
        first, last = con.execute(f"SELECT min(ts), max(ts) FROM {labels} WHERE label_complete").fetchone()
        (feature_rows,), (entity_rows,) = (con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in (features, labels))
        schema = con.execute(f"DESCRIBE SELECT * FROM {features}").fetchall()
    end = last + timedelta(seconds=1)
    bounds = split_boundaries(profile, first, end, "time")
    return {
        "name": name, "profile": str(profile_path), "lake": str(lake.root), "fleet": fleet, "out": str(workdir / name / "out"),
        "ours_out": str(lake.table_file(fleet, TABLE)), "start": str(first), "end": str(end),
        "bounds": {k: str(v) for k, v in asdict(bounds).items()},
        "max_age_s": profile.features.max_age.total_seconds(), "targets": [label_column(c) for c in profile.components],
        "label_files": [str(f) for f in lake.files(fleet, "labels")], "feature_files": [str(f) for f in lake.files(fleet, "features")],
        "feature_glob": str(lake.table_dir(fleet, "features") / "date=*" / "data.parquet"),
        "feature_types": {n: t for n, t, *_ in schema if n not in KEYS},
        "facts": f"{feature_rows:,} feature rows, {entity_rows:,} entity rows ({entities}), window {first} .. {end}",
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ sides (timed)


def output(case: dict, side: str) -> Path:
    return Path(case["ours_out"] if side == "ours" else Path(case["out"]) / side / "data.parquet")


def bound(case: dict, key: str) -> datetime:
    return datetime.fromisoformat(case["bounds"][key])


def side_ours(case: dict) -> dict:
    from dataclasses import asdict

    from iot_mlops.lake import Lake
    from iot_mlops.profiles import load_profile
    from iot_mlops.training.dataset import build_dataset

    report = build_dataset(Lake(Path(case["lake"])), load_profile(Path(case["profile"])), split="time")
    return {"out": str(report.path), "rows": sum(report.rows.values()), "window": [str(w) for w in report.window],
            "bounds": {k: str(v) for k, v in asdict(report.boundaries).items()}}  # fmt: skip


def side_polars(case: dict) -> dict:
    import polars as pl

    ts, targets = pl.col("ts"), case["targets"]
    labels = (pl.read_parquet(case["label_files"], columns=["device_id", "ts", "label_complete", "out_of_service", *targets],
                              hive_partitioning=False)
              .filter(pl.col("label_complete") & ~pl.col("out_of_service")
                      & (ts >= datetime.fromisoformat(case["start"])) & (ts < datetime.fromisoformat(case["end"])))
              .select("device_id", "ts", *targets).sort("ts"))  # fmt: skip
    features = pl.read_parquet(case["feature_files"], hive_partitioning=False).rename({"ts": "feature_ts"}).sort("feature_ts")
    split = (pl.when(ts < bound(case, "train_end")).then(pl.lit("train"))
             .when((ts >= bound(case, "val_start")) & (ts < bound(case, "val_end"))).then(pl.lit("validation"))
             .when(ts >= bound(case, "test_start")).then(pl.lit("test")))  # fmt: skip
    joined = (labels.join_asof(features, left_on="ts", right_on="feature_ts", by="device_id", strategy="backward",
                               tolerance=timedelta(seconds=case["max_age_s"]))
              .filter(pl.col("feature_ts").is_not_null()).with_columns(split.alias("split")).filter(pl.col("split").is_not_null())
              .select("device_id", "ts", "feature_ts", "split", *targets, *[c for c in features.columns if c not in KEYS + ["feature_ts"]])
              .sort("ts", "device_id"))  # fmt: skip
    target = output(case, "polars")
    target.parent.mkdir(parents=True, exist_ok=True)
    joined.write_parquet(target, compression="zstd")
    fsync_tree(target.parent)
    return {"out": str(target), "rows": joined.height}


def finish_pandas(case: dict, merged, side: str, schema) -> dict:
    """Unmatched rows dropped, the split assigned, sorted by (ts, device_id), written (zstd) and fsynced."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    merged = merged[merged["feature_ts"].notna()]
    ts = merged["ts"]
    split = np.select([ts < bound(case, "train_end"), (ts >= bound(case, "val_start")) & (ts < bound(case, "val_end")),
                       ts >= bound(case, "test_start")], ["train", "validation", "test"], default="")  # fmt: skip
    merged = merged.assign(split=split)[lambda d: d["split"] != ""]
    merged = merged[schema.names].sort_values(["ts", "device_id"], kind="stable")
    target = output(case, side)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(merged, schema=schema, preserve_index=False), target, compression="zstd")
    fsync_tree(target.parent)
    return {"out": str(target), "rows": len(merged)}


def output_schema(case: dict, labels, features):
    """Ours' column order and the inputs' types (pandas turns whole numbers with gaps into floats)."""
    import pyarrow as pa

    feature_cols = [c for c in features.names if c not in KEYS]
    return pa.schema([labels.field("device_id"), labels.field("ts"), features.field("ts").with_name("feature_ts"),
                      pa.field("split", pa.string()), *(labels.field(t) for t in case["targets"]),
                      *(features.field(c) for c in feature_cols)])  # fmt: skip


def side_merge_asof(case: dict) -> dict:
    import pandas as pd
    import pyarrow.parquet as pq

    cols = ["device_id", "ts", "label_complete", "out_of_service", *case["targets"]]
    labels_t = pq.read_table(case["label_files"], columns=cols, partitioning=None)
    features_t = pq.read_table(case["feature_files"], partitioning=None)
    labels, features = labels_t.to_pandas(), features_t.to_pandas()
    labels = labels[labels["label_complete"].fillna(False).astype(bool) & ~labels["out_of_service"].astype(bool)
                    & (labels["ts"] >= datetime.fromisoformat(case["start"])) & (labels["ts"] < datetime.fromisoformat(case["end"]))]  # fmt: skip
    merged = pd.merge_asof(labels[["device_id", "ts", *case["targets"]]].sort_values("ts", kind="stable"),
                           features.rename(columns={"ts": "feature_ts"}).sort_values("feature_ts", kind="stable"),
                           left_on="ts", right_on="feature_ts", by="device_id", direction="backward",
                           tolerance=pd.Timedelta(seconds=case["max_age_s"]))  # fmt: skip
    return finish_pandas(case, merged, "merge_asof", output_schema(case, labels_t.schema, features_t.schema))


FEAST_TYPES = {"DOUBLE": "Float64", "FLOAT": "Float32", "BIGINT": "Int64", "INTEGER": "Int32", "VARCHAR": "String", "BOOLEAN": "Bool"}
FEAST = {}


def prepare_feast(case: dict) -> None:
    """The feature repo: a DuckDB offline store and one feature view over the feature partitions, registered."""
    import feast
    import feast.types
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    repo = Path(case["out"]) / "feast_repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        f"project: bench\nprovider: local\nregistry: {repo / 'registry.db'}\noffline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\nentity_key_serialization_version: 3\n")  # fmt: skip
    device = feast.Entity(name="device", join_keys=["device_id"], value_type=feast.ValueType.STRING)
    source = feast.FileSource(name="features", path=case["feature_glob"], timestamp_field="feature_ts", field_mapping={"ts": "feature_ts"})
    fields = [feast.Field(name="feature_ts", dtype=feast.types.UnixTimestamp)]
    fields += [feast.Field(name=n, dtype=getattr(feast.types, FEAST_TYPES[t])) for n, t in case["feature_types"].items()]
    view = feast.FeatureView(name="features", entities=[device], ttl=timedelta(seconds=case["max_age_s"]), schema=fields, source=source)
    store = feast.FeatureStore(repo_path=str(repo))
    store.apply([device, view])
    FEAST.update(store=store, refs=[f"features:{f.name}" for f in fields])


def side_feast(case: dict) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cols = ["device_id", "ts", "label_complete", "out_of_service", *case["targets"]]
    labels_t = pq.read_table(case["label_files"], columns=cols, partitioning=None)
    labels = labels_t.to_pandas()
    labels = labels[labels["label_complete"].fillna(False).astype(bool) & ~labels["out_of_service"].astype(bool)
                    & (labels["ts"] >= datetime.fromisoformat(case["start"])) & (labels["ts"] < datetime.fromisoformat(case["end"]))]  # fmt: skip
    entity = labels[["device_id", "ts", *case["targets"]]].assign(ts=lambda d: d["ts"].dt.tz_localize("UTC"))
    result = FEAST["store"].get_historical_features(entity_df=entity, features=FEAST["refs"]).to_arrow()
    result = result.filter(pc.is_valid(result["feature_ts"])).to_pandas()
    for col in ("ts", "feature_ts"):
        result[col] = result[col].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    features_schema = pq.read_schema(case["feature_files"][0])
    return finish_pandas(case, result, "feast", output_schema(case, labels_t.schema, features_schema))


SIDE_FUNCS = {"ours": side_ours, "polars": side_polars, "merge_asof": side_merge_asof, "feast": side_feast}
IMPORTS = {"ours": ["duckdb", "polars", "iot_mlops.training.dataset"], "polars": ["polars"], "merge_asof": ["pandas", "pyarrow.parquet"]}


# ------------------------------------------------------------------------------------------------ driver


def main() -> int:
    p = parser(__doc__, SIDES)
    p.add_argument("--feast-python", help="a python with feast[duckdb] installed: also race Feast (not in CI)")
    args = p.parse_args()
    if args.worker:
        import importlib

        case = json.loads(Path(args.case_file).read_text())
        prep = (lambda side: prepare_feast(case)) if args.worker == "feast" else (lambda side: [importlib.import_module(m) for m in IMPORTS[side]])
        run_worker(SIDE_FUNCS, args.worker, args.case_file, prepare=prep)
        return 0

    import pandas as pd

    sides = SIDES if args.feast_python else SIDES[:3]
    print(machine_line("training_dataset", "duckdb", "polars", "pandas", "pyarrow"), flush=True)
    if args.feast_python:
        import subprocess

        print("feast side: " + subprocess.run([args.feast_python, "-c", "import feast, duckdb, ibis; print(f'feast {feast.__version__}, "
                                               "duckdb {duckdb.__version__}, ibis {ibis.__version__}')"],
                                              capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    problems, speedups = [], {"polars": [], "merge_asof": [], "feast": []}
    with workdir(args, "training_dataset") as work:
        builds = {"azure_pdm": lambda: build_azure(work / "prep", 40 if args.tiny else None),
                  "water_heaters": lambda: build_water_heaters(work / "prep", *((40, 6, 10) if args.tiny else (1000, 30, 30)))}  # fmt: skip
        for name, build in builds.items():
            case = describe(name, build(), work)
            print(f"{name}: {case['facts']}", flush=True)

            def before_each(side: str, case=case) -> None:
                shutil.rmtree(output(case, side).parent, ignore_errors=True)

            runs = measure(__file__, sides, case, work, runs=args.runs, before_each=before_each, label=name,
                           pythons={"feast": args.feast_python} if args.feast_python else None)  # the Feast side runs in its own venv
            ours = runs["ours"]
            if [ours.last["window"], ours.last["bounds"]] != [[case["start"], case["end"]], case["bounds"]]:
                problems.append(f"{name}: ours used window {ours.last['window']} {ours.last['bounds']}, the others {case['bounds']}")
            ours_df = pd.read_parquet(output(case, "ours"))
            for side in sides[1:]:
                problems += frame_problems(ours_df, pd.read_parquet(output(case, side)), KEYS, f"{name} {side}")
                speedups[side].append(runs[side].median / ours.median)
            del ours_df
            print()
            table(["side", "median s", "runs s", "CPU s", "peak MB", "rows out", "x ours"],
                  [[s, r.median, " ".join(f"{x:.2f}" for x in r.seconds), sorted(r.cpu_seconds)[len(r.cpu_seconds) // 2], r.peak,
                    r.last["rows"], r.median / ours.median] for s, r in runs.items()])  # fmt: skip
            print(flush=True)
    keys = {f"speedup_vs_{s}": min(v) for s, v in speedups.items() if v}
    return finish(problems, keys)


if __name__ == "__main__":
    sys.exit(main())
