#!/usr/bin/env python
"""Benchmark: the point-in-time join that builds a training dataset, three ways.

Run on demand from the repository root (offline; nothing is downloaded):

    python bench/training_dataset.py             # full run: about 7 minutes on 2 busy cores
    python bench/training_dataset.py --quick     # smoke run: under a minute
    python bench/training_dataset.py --profile   # also: where ours spends its time, and what
                                                 # candidate changes would save (~3 more minutes)
    python bench/training_dataset.py --workdir /tmp/td   # keep the lakes; the next run with the
                                                 # same code and parameters reuses them (no prep)

The join: each label (entity) row gets the newest feature row of its device at or before the
label time, if that row is at most the profile's ``features.max_age`` old (else the label is
dropped), plus the split (train / validation / test, with horizon gaps) of the label time.

Three methods, on the same Parquet lake, each writing one Parquet file sorted by (ts, device_id):

* ours: ``iot_mlops.training.dataset.build_dataset`` on an ``iot_mlops.lake.connect()``
  connection, exactly what the ``training_dataset`` asset does: a DuckDB ``ASOF JOIN`` over the
  lake's ``labels`` and ``features`` partitions, written atomically, then the fingerprint
  (sha256 of the file), the per-split counts and the manifest;
* merge_asof: pandas, the usual way: read the same partitions with pyarrow, filter the labels,
  ``pd.merge_asof(by="device_id", direction="backward", tolerance=max_age)``, drop the unmatched,
  assign the split, sort, write with pyarrow;
* ineq_join: DuckDB, the way Feast's offline store does a point-in-time join: an inner join on
  the device and the TTL window, ``f.ts <= l.ts AND f.ts >= l.ts - max_age``, then
  ``QUALIFY row_number() OVER (PARTITION BY device, label ts ORDER BY f.ts DESC) = 1`` keeps the
  newest. The window is written as Feast writes it: spelled ``l.ts - f.ts <= max_age`` (the same
  rows) DuckDB 1.5 applies it as a filter after the join instead of inside it, about 2x slower.

The other two use the window and split boundaries computed by the project's own
``split_boundaries`` (outside the timed part); ours computes them itself and the run checks
that they agree.

Two cases; everything below is prepared before anything is timed:

* ``azure_pdm``: the real data set (/work/shared/datasets/azure_pdm, or
  ``IOT_MLOPS_AZURE_PDM_DIR``) ingested into a temporary lake with
  ``iot_mlops.ingestion.ingest.ingest_devices / ingest_telemetry / ingest_events``, then
  ``compute_features`` (3-h step: 20 machines x 90 days = 14,400 rows) and ``compute_labels``.
  compute_labels' labels sit exactly on the feature grid, where an exact-timestamp join would
  do; so the labels table the join reads is replaced by entity rows every hour per machine
  over the telemetry span (two in three off the 3-h grid), labelled with the project's own
  rule (``iot_mlops.training.labels.labels_sql``, the query compute_labels runs).
* ``water_heaters``: ``WaterHeaterSimulator`` at 1,000 heaters x 30 days of 1-minute telemetry
  (43.2 M rows, written to the lake as telemetry partitions; one heater in ten is offline for
  2-8 hours once, so features have gaps longer than max_age), events for the same days,
  ``compute_features`` (1-h step: 1,000 x 30 x 24 rows, less the outages) and, as labels, a
  serving log: entity rows every 30 minutes per heater (1.44 M rows), one heater in four on the
  clock (some rows exactly on a feature time, or exactly max_age after one), the others at
  their own second offset; labelled with ``labels_sql``. Events stop with the telemetry, so
  the last day's labels are incomplete and are left out.
  Why not every 10 minutes (4.32 M rows, 3.9 M rows out x 128 columns)? Measured here, one
  run each: ours 114 s (7.5 GB peak), merge_asof 143 s (19.6 GB peak on a 23 GB machine),
  ineq_join over 5 minutes: too slow and too big for a bounded run. ``--every 10`` runs it.

Every run is a fresh subprocess (``--worker``). Its time is measured inside it around the
work only (imports excluded) and the best of N runs is reported (N = 3; a method slower than
60 s runs twice at most; repeats stop at the ``--budget``, so on a busy machine the large
case may get one run). Peak memory is the child's own peak resident set (``VmHWM``, max over
its runs). CPU seconds are printed too: on a shared machine they vary less than wall time.

The three outputs are then compared in DuckDB, row by row in file order (POSITIONAL JOIN):
same columns in the same order and types, same number of rows, every value equal in every
row, including device_id, ts and feature_ts (doubles exactly: no method computes anything;
NaN and NULL count as equal because pandas writes NaN as NULL). A difference is named with
examples and the run exits with status 1, without the final ``speedup_vs_merge_asof: X.XX``
line (the smaller of the cases' speedups of ours over merge_asof).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import peak_rss_mb, spawn_worker  # noqa: E402

AZURE_DIR = Path(os.environ.get("IOT_MLOPS_AZURE_PDM_DIR") or ROOT.parent / "shared" / "datasets" / "azure_pdm")
PROFILES = ROOT / "profiles"
METHODS = ("ours", "merge_asof", "ineq_join")
OUTPUT_FILE = "data.parquet"


# --------------------------------------------------------------------------- case definitions


@dataclass
class Case:
    """One benchmark case: a lake with features and (entity-row) labels, and the join's window."""

    name: str
    profile: str
    lake: str
    out: str  # where merge_asof and ineq_join write their files (<out>/<method>/data.parquet)
    start: str = ""  # the labelled window and split boundaries, as build_dataset computes them
    end: str = ""
    bounds: dict = field(default_factory=dict)
    feature_rows: int = 0
    entity_rows: int = 0
    label_rows: int = 0  # complete, in-service labels inside the window: what the join's left side holds
    entities: str = ""
    note: str = ""
    prep_seconds: float = 0.0


@dataclass
class Result:
    method: str
    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    import_mb: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    stages: dict = field(default_factory=dict)
    rows: int = 0

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def peak(self) -> float:
        return max(self.peak_mb)


def write_entity_labels(con, lake, profile, entity_sql: str, days: list[date]) -> int:
    """Replace the lake's labels with labels of the entity rows, one partition per day.

    The project's label rule (labels_sql, as compute_labels runs it) over entity rows instead
    of feature rows: `entity_sql` is a query of (device_id, ts) over all days.
    """
    from iot_mlops.lake import row_count, sql_str
    from iot_mlops.training.labels import events_coverage, labels_sql

    fleet = profile.name
    coverage = events_coverage(lake, fleet)
    events = lake.scan(fleet, "events")
    con.execute(f"CREATE OR REPLACE TEMP TABLE entity_rows AS {entity_sql}")
    shutil.rmtree(lake.table_dir(fleet, "labels"), ignore_errors=True)
    total = 0
    for day in days:
        rows = (
            f"(SELECT device_id, ts FROM entity_rows WHERE ts >= TIMESTAMP {sql_str(day)} "
            f"AND ts < TIMESTAMP {sql_str(day + timedelta(days=1))})"
        )
        total += row_count(con, lake.write_partition(con, fleet, "labels", day, labels_sql(profile, rows, events, coverage)))
    con.execute("DROP TABLE entity_rows")
    return total


def fill_window(case: Case, con, lake, profile) -> None:
    """The labelled window and split boundaries, the way build_dataset computes them."""
    from iot_mlops.training.dataset import split_boundaries

    fleet = profile.name
    labels, features = lake.scan(fleet, "labels"), lake.scan(fleet, "features")
    first, last = con.execute(f"SELECT min(ts), max(ts) FROM {labels} WHERE label_complete").fetchone()
    end = last + timedelta(seconds=1)
    bounds = split_boundaries(profile, first, end, "time")
    case.start, case.end = str(first), str(end)
    case.bounds = {k: str(v) for k, v in asdict(bounds).items()}
    (case.feature_rows,) = con.execute(f"SELECT count(*) FROM {features}").fetchone()
    (case.entity_rows,) = con.execute(f"SELECT count(*) FROM {labels}").fetchone()
    (case.label_rows,) = con.execute(f"SELECT count(*) FROM {labels} WHERE label_complete AND NOT out_of_service").fetchone()


def build_azure(workdir: Path) -> Case:
    """Ingest the real Azure PdM data, compute features and labels; labels become hourly entity rows."""
    from iot_mlops.features import compute_features
    from iot_mlops.ingestion.ingest import ingest_devices, ingest_events, ingest_telemetry
    from iot_mlops.lake import Lake, connect
    from iot_mlops.partitions import last_source_day
    from iot_mlops.profiles import load_profile, source_folder
    from iot_mlops.training.labels import compute_labels

    profile_path = PROFILES / "azure_pdm.yaml"
    profile = load_profile(profile_path)  # its start is a fixed date
    fleet = profile.name
    folder = source_folder(profile, PROFILES, workdir / "landing")
    last = last_source_day(profile, folder)
    if last is None:
        raise SystemExit(f"azure_pdm: no telemetry under {folder} (set IOT_MLOPS_AZURE_PDM_DIR)")
    first = profile.partitions.start
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    lake_root = workdir / "azure_pdm" / "lake"
    shutil.rmtree(lake_root, ignore_errors=True)
    lake = Lake(lake_root)
    with connect() as con:
        clock = time.perf_counter()
        ingest_devices(con, lake, profile, folder)
        ingest_telemetry(con, lake, profile, folder, days)
        ingest_events(con, lake, profile, folder, days)
        ingested = time.perf_counter() - clock
        compute_features(con, lake, profile, days)
        grid = compute_labels(con, lake, profile, days)
        featurized = time.perf_counter() - clock - ingested
        telemetry = lake.scan(fleet, "telemetry")
        machines, t0, t1 = con.execute(f"SELECT count(DISTINCT device_id), min(ts), max(ts) FROM {telemetry}").fetchone()
        # a serving log of hourly requests per machine over the telemetry's span, gaps included
        entity_sql = (
            f"SELECT d.device_id, CAST(s.ts AS TIMESTAMP) AS ts FROM (SELECT DISTINCT device_id FROM {telemetry}) d, "
            f"generate_series(TIMESTAMP '{t0}', TIMESTAMP '{t1}', INTERVAL 1 HOUR) s(ts)"
        )
        write_entity_labels(con, lake, profile, entity_sql, days)
        case = Case(name="azure_pdm", profile=str(profile_path), lake=str(lake_root), out=str(workdir / "azure_pdm" / "out"))
        fill_window(case, con, lake, profile)
    case.entities = (
        f"every hour per machine, {t0:%Y-%m-%d %H:%M} .. {t1:%Y-%m-%d %H:%M} ({case.entity_rows:,} rows, 2 in 3 off the 3-h feature grid)"
    )
    case.note = (
        f"real data: {machines} machines, {len(days)} days ingested; compute_labels' own {grid.complete_rows + grid.incomplete_rows:,} "
        f"labels (on the feature grid) replaced by the hourly entity rows; prep ingest {ingested:.0f} s, features and labels {featurized:.0f} s"
    )
    return case


def build_water_heaters(workdir: Path, devices: int, n_days: int, every_minutes: int) -> Case:
    """Simulate heaters x days of 1-minute telemetry (with outages), features, entity rows."""
    import pandas as pd
    import pyarrow as pa

    from iot_mlops.features import compute_features
    from iot_mlops.lake import Lake, connect, row_count, sql_str
    from iot_mlops.profiles import load_profile
    from iot_mlops.sources.simulator import WaterHeaterSimulator

    profile_path = PROFILES / "water_heaters.yaml"
    profile = load_profile(profile_path)
    fleet = profile.name
    spec = profile.source.simulator.model_copy(update={"devices": devices})
    sim = WaterHeaterSimulator(spec, int(profile.sampling_interval.total_seconds()))
    days = [spec.epoch + timedelta(days=i) for i in range(n_days)]
    lake_root = workdir / "water_heaters" / "lake"
    shutil.rmtree(lake_root, ignore_errors=True)
    lake = Lake(lake_root)
    ts_col = profile.source.telemetry.timestamp_column or profile.timestamp_column
    dev_col = profile.source.telemetry.device_column or profile.device_column
    sensors = ", ".join(f"CAST({s.source_column} AS DOUBLE) AS {s.name}" for s in profile.sensors)
    ranges = " AND ".join(f"{s.name} BETWEEN {s.min} AND {s.max}" for s in profile.sensors)
    kinds = {spec_.path.split("/")[0]: spec_ for spec_ in profile.source.events}
    num = "CAST(substr(device_id, 4) AS INTEGER)"  # WH-1001 -> 1001
    # Connectivity outages, so that features have gaps longer than max_age: one heater in ten is
    # silent for 2, 4, 6 or 8 hours once, on a day and hour of its own.
    outage = (
        f"({num} % 10 = 0 AND CAST(ts AS DATE) = DATE {sql_str(days[0])} + CAST(({num} // 10) % {n_days} AS INTEGER) "
        f"AND hour(ts) >= ({num} * 7) % 14 AND hour(ts) < ({num} * 7) % 14 + 2 + {num} % 8)"
    )
    phases, telemetry_rows = {}, 0
    clock = time.perf_counter()
    with connect() as con:
        for day in days:
            con.register("sim_telemetry", sim.telemetry(day))  # already ordered by device, then time
            query = (
                f"SELECT * FROM (SELECT CAST({dev_col} AS VARCHAR) AS device_id, CAST({ts_col} AS TIMESTAMP) AS ts, {sensors} "
                f"FROM sim_telemetry) WHERE {ranges} AND NOT {outage}"
            )
            telemetry_rows += row_count(con, lake.write_partition(con, fleet, "telemetry", day, query))
            con.unregister("sim_telemetry")
            frames = []
            for name, frame in sim.events(day).items():
                ev = kinds[name]
                frames.append(pd.DataFrame({
                    "device_id": frame[ev.device_column or profile.device_column].astype(str),
                    "ts": frame[ev.timestamp_column or profile.timestamp_column].astype("datetime64[us]"),
                    "kind": ev.kind, "value": frame[ev.value_column].astype(str),
                }))  # fmt: skip
            con.register("sim_events", pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False))
            lake.write_partition(con, fleet, "events", day, "SELECT device_id, ts, kind, value FROM sim_events ORDER BY ts, device_id, kind, value")
            con.unregister("sim_events")
        attrs = profile.source.devices.attributes
        con.register("sim_devices", pa.Table.from_pandas(sim.devices(), preserve_index=False))
        select = [f"CAST({a.source_column} AS VARCHAR) AS {a.name}" for a in attrs if a.kind == "categorical"]
        select += [f"CAST({a.source_column} AS DOUBLE) AS {a.name}" for a in attrs if a.kind == "numeric"]
        lake.write_table(con, fleet, "devices", f"SELECT CAST(device_id AS VARCHAR) AS device_id, {', '.join(select)} FROM sim_devices ORDER BY device_id")
        con.unregister("sim_devices")
    phases["simulate"] = time.perf_counter() - clock
    clock = time.perf_counter()
    # the last hour's bucket is labelled by the next midnight: one more feature day
    with connect() as con:
        compute_features(con, lake, profile, [*days, days[-1] + timedelta(days=1)])
    phases["features"] = time.perf_counter() - clock
    clock = time.perf_counter()
    with connect() as con:
        step = every_minutes * 60
        t0 = datetime.combine(days[0], datetime.min.time())
        slots = n_days * 86400 // step
        # A serving log: each heater is polled every `every_minutes`; one in four on the clock
        # (second 0, so some rows fall exactly on a feature time or exactly max_age after one),
        # the others from their own second offset.
        phase = f"CASE WHEN {num} % 4 = 0 THEN 0 ELSE ({num} * 37) % {step} END"
        entity_sql = (
            f"SELECT device_id, TIMESTAMP {sql_str(t0)} + to_seconds(CAST(s.i * {step} + {phase} AS BIGINT)) AS ts "
            f"FROM read_parquet({sql_str(lake.table_file(fleet, 'devices'))}), range({slots}) s(i)"
        )
        write_entity_labels(con, lake, profile, entity_sql, days)
        case = Case(name="water_heaters", profile=str(profile_path), lake=str(lake_root), out=str(workdir / "water_heaters" / "out"))
        fill_window(case, con, lake, profile)
    phases["labels"] = time.perf_counter() - clock
    case.entities = (
        f"every {every_minutes} min per heater over {n_days} days, one heater in four on the clock, "
        f"the others at their own second offset ({case.entity_rows:,} rows)"
    )
    case.note = (
        f"simulator: {sim.n_devices:,} heaters x {n_days} days of 1-min telemetry ({telemetry_rows:,} rows; one heater in ten "
        f"offline for 2-8 h once), events of the same days (so the last day's labels are incomplete); prep "
        + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
    )
    return case


def source_fingerprint(*parts: object) -> str:
    """What a prepared lake depends on: the parameters and the code and data that build it."""
    import hashlib

    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode())
    files = [Path(__file__), *sorted((ROOT / "iot_mlops").rglob("*.py")), *sorted(PROFILES.glob("*.yaml"))]
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def prepared(workdir: Path, name: str, key: str, build) -> tuple[Case, bool]:
    """The case's lake from an earlier run in the same --workdir when nothing changed, else built."""
    marker = workdir / name / "prepared.json"
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved.get("key") == key:
            return Case(**saved["case"]), True
    marker.unlink(missing_ok=True)
    case = build()
    marker.write_text(json.dumps({"key": key, "case": asdict(case)}))
    return case, False


# --------------------------------------------------------------------------- the three methods


def load_case(case: Case):
    from iot_mlops.profiles import load_profile
    from iot_mlops.training.dataset import Boundaries

    profile = load_profile(Path(case.profile))
    b = case.bounds
    bounds = Boundaries(b["name"], *(datetime.fromisoformat(b[k]) for k in ("train_end", "val_start", "val_end", "test_start")))
    return profile, bounds, datetime.fromisoformat(case.start), datetime.fromisoformat(case.end)


def output_file(case: Case, method: str) -> Path:
    if method == "ours":
        from iot_mlops.training.dataset import TABLE

        return Path(case.lake) / Path(case.profile).stem / TABLE / OUTPUT_FILE
    return Path(case.out) / method / OUTPUT_FILE


def run_ours(case: Case) -> dict:
    """The project's code path: build_dataset, as the training_dataset asset calls it."""
    from iot_mlops.lake import Lake, connect
    from iot_mlops.profiles import load_profile
    from iot_mlops.training.dataset import build_dataset

    profile = load_profile(Path(case.profile))
    lake = Lake(Path(case.lake))
    start = time.perf_counter()
    con = connect()
    try:
        report = build_dataset(con, lake, profile, split="time")
    finally:
        con.close()
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed, "rows": sum(report.rows.values()), "split_rows": report.rows,
        "window": [str(report.window[0]), str(report.window[1])],
        "bounds": {k: str(v) for k, v in asdict(report.boundaries).items()},
    }  # fmt: skip


def run_merge_asof(case: Case) -> dict:
    """pandas: read the partitions, merge_asof by device (backward, tolerance max_age), sort, write."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from iot_mlops.training.labels import label_column

    profile, bounds, start, end = load_case(case)
    fleet = profile.name
    lake = Path(case.lake) / fleet
    targets = [label_column(c) for c in profile.components]
    stages = {}
    clock = began = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    features_table = pq.read_table(sorted((lake / "features").glob(f"date=*/{OUTPUT_FILE}")), partitioning=None)
    labels_table = pq.read_table(sorted((lake / "labels").glob(f"date=*/{OUTPUT_FILE}")), partitioning=None,
                                 columns=["device_id", "ts", "label_complete", "out_of_service", *targets])  # fmt: skip
    features, labels = features_table.to_pandas(), labels_table.to_pandas()
    lap("read")
    labels = labels[labels["label_complete"].fillna(False).astype(bool) & ~labels["out_of_service"].astype(bool)
                    & (labels["ts"] >= start) & (labels["ts"] < end)]
    labels = labels[["device_id", "ts", *targets]].sort_values("ts", kind="stable")
    features = features.rename(columns={"ts": "feature_ts"}).sort_values("feature_ts", kind="stable")
    merged = pd.merge_asof(
        labels, features, left_on="ts", right_on="feature_ts", by="device_id",
        direction="backward", tolerance=pd.Timedelta(profile.features.max_age),
    )  # fmt: skip
    merged = merged[merged["feature_ts"].notna()]
    ts = merged["ts"]
    split = np.select(
        [ts < bounds.train_end, (ts >= bounds.val_start) & (ts < bounds.val_end), ts >= bounds.test_start],
        ["train", "validation", "test"], default="",
    )  # fmt: skip
    merged.insert(2, "split", split)
    merged = merged[merged["split"] != ""]
    feature_cols = [c for c in features_table.column_names if c not in ("device_id", "ts")]
    merged = merged[["device_id", "ts", "feature_ts", "split", *targets, *feature_cols]]
    merged = merged.sort_values(["ts", "device_id"], kind="stable").reset_index(drop=True)
    lap("join")
    # the dataset's schema: the inputs' types (targets are whole numbers: pandas made them float)
    schema = pa.schema(
        [labels_table.schema.field("device_id"), labels_table.schema.field("ts"),
         features_table.schema.field("ts").with_name("feature_ts"), pa.field("split", pa.string()),
         *(labels_table.schema.field(t) for t in targets), *(features_table.schema.field(c) for c in feature_cols)]
    )  # fmt: skip
    for t in targets:
        merged[t] = merged[t].astype(schema.field(t).type.to_pandas_dtype())
    target = output_file(case, "merge_asof")
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(merged, schema=schema, preserve_index=False), target, compression="zstd")
    lap("write")
    return {"seconds": time.perf_counter() - began, "rows": len(merged), "stages": stages}


def ineq_join_sql(case: Case, features: str, labels: str) -> str:
    """Feast's point-in-time join in DuckDB: every feature row in the TTL window, newest kept."""
    from iot_mlops.features.sql import interval
    from iot_mlops.lake import sql_str
    from iot_mlops.training.dataset import split_sql
    from iot_mlops.training.labels import label_column

    profile, bounds, start, end = load_case(case)
    max_age = interval(profile.features.max_age)
    split = split_sql(bounds)
    targets = ", ".join(f"l.{label_column(c)}" for c in profile.components)
    return f"""
SELECT * FROM (
  SELECT l.device_id, l.ts, f.ts AS feature_ts, {split} AS split, {targets}, f.* EXCLUDE (device_id, ts)
  FROM (SELECT * FROM {labels} WHERE label_complete AND NOT out_of_service
        AND ts >= TIMESTAMP {sql_str(start)} AND ts < TIMESTAMP {sql_str(end)}) l
  JOIN {features} f ON f.device_id = l.device_id AND f.ts <= l.ts AND f.ts >= l.ts - {max_age}
  QUALIFY row_number() OVER (PARTITION BY l.device_id, l.ts ORDER BY f.ts DESC) = 1
) WHERE split IS NOT NULL
ORDER BY ts, device_id
"""


def run_ineq_join(case: Case) -> dict:
    from iot_mlops.lake import Lake, connect, row_count
    from iot_mlops.lake.store import write_query

    fleet = Path(case.profile).stem
    lake = Lake(Path(case.lake))
    target = output_file(case, "ineq_join")
    start = time.perf_counter()
    con = connect()
    try:
        query = ineq_join_sql(case, lake.scan(fleet, "features"), lake.scan(fleet, "labels"))
        write_query(con, query, target)
        elapsed = time.perf_counter() - start
        rows = row_count(con, target)
    finally:
        con.close()
    return {"seconds": elapsed, "rows": rows}


def run_profile(case: Case) -> dict:
    """Where ours spends its time, and what candidate changes to it would save.

    build_dataset's phases (a Lake subclass times the COPY, a wrapper the fingerprint); the
    COPY query's operators (DuckDB's JSON profiler: CPU seconds summed over threads); then the
    same query cut down step by step, and candidate changes on the same inputs.
    """
    import resource

    import pyarrow as pa
    import pyarrow.parquet as pq

    import iot_mlops.training.dataset as dataset
    from iot_mlops.lake import Lake, connect, sql_str

    profile, bounds, start, end = load_case(case)
    fleet = profile.name
    timings = {"write_table": 0.0, "fingerprint": 0.0}

    class TimingLake(Lake):
        def write_table(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return super().write_table(*args, **kwargs)
            finally:
                timings["write_table"] += time.perf_counter() - t

    real_fingerprint = dataset.fingerprint

    def timed_fingerprint(path):
        t = time.perf_counter()
        try:
            return real_fingerprint(path)
        finally:
            timings["fingerprint"] += time.perf_counter() - t

    dataset.fingerprint = timed_fingerprint
    lake = TimingLake(Path(case.lake))
    con = connect()
    t = time.perf_counter()
    dataset.build_dataset(con, lake, profile, split="time")
    total = time.perf_counter() - t
    con.close()
    dataset.fingerprint = real_fingerprint

    scratch = Path(case.out) / "profile"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    out = scratch / "out.parquet"
    labels, features = lake.scan(fleet, "labels"), lake.scan(fleet, "features")
    query = dataset.dataset_sql(profile, features, labels, bounds, start, end)
    unordered = query.replace("ORDER BY ts, device_id", "")
    narrow = query.replace(", f.* EXCLUDE (device_id, ts)", "")  # keys, feature_ts, split, targets
    assert unordered != query and narrow != query, "dataset_sql changed: update the profile's variants"
    con = connect()
    # the same inputs compacted to one file per table (prepared untimed)
    compact = {}
    for table, src in (("features", features), ("labels", labels)):
        compact[table] = scratch / f"{table}.parquet"
        con.execute(f"COPY (SELECT * FROM {src}) TO {sql_str(compact[table])} (FORMAT parquet, COMPRESSION zstd)")
    compacted = dataset.dataset_sql(profile, f"read_parquet({sql_str(compact['features'])})",
                                    f"read_parquet({sql_str(compact['labels'])})", bounds, start, end)  # fmt: skip

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def best(fn) -> list[float]:
        """(wall, CPU) seconds, best of 2 (of 1 past 5 s, to keep --profile bounded)."""
        runs = []
        for _ in range(2):
            t, c = time.perf_counter(), cpu()
            fn()
            runs.append((time.perf_counter() - t, cpu() - c))
            if runs[0][0] > 5.0:
                break
        return list(min(runs))

    copy = lambda sql: lambda: con.execute(f"COPY ({sql}) TO {sql_str(out)} (FORMAT parquet, COMPRESSION zstd)")  # noqa: E731
    fetch = lambda sql: lambda: con.execute(sql).fetchall()  # noqa: E731

    def arrow_gather() -> None:
        """Narrow ASOF join + sort in DuckDB, then the feature columns gathered by row index (Arrow take)."""
        feats = con.execute(f"SELECT * FROM {features}").to_arrow_table()
        con.register("feature_keys", pa.table({"device_id": feats["device_id"], "ts": feats["ts"], "row": pa.array(range(feats.num_rows), pa.int64())}))
        keys = con.execute(
            narrow.replace(features, "feature_keys").replace("f.ts AS feature_ts,", "f.ts AS feature_ts, f.row AS feature_row,")
        ).to_arrow_table()  # fmt: skip
        con.unregister("feature_keys")
        rest = feats.drop_columns(["device_id", "ts"]).take(keys["feature_row"])
        keys = keys.drop_columns(["feature_row"])
        table = pa.Table.from_arrays([*keys.columns, *rest.columns], names=[*keys.column_names, *rest.column_names])
        pq.write_table(table, out, compression="zstd")

    stages = {
        "read both inputs": best(fetch(f"SELECT (SELECT count(*) FROM (SELECT * FROM {labels})), (SELECT sum(hash(x)) FROM (SELECT * FROM {features}) x)")),
        "narrow ASOF join only (count)": best(fetch(f"SELECT count(*) FROM ({unordered})")),
        "wide join, no sort, no write": best(fetch(f"SELECT count(*), sum(hash(q)) FROM ({unordered}) q")),
        "wide join + sort, no write": best(fetch(f"SELECT count(*), sum(hash(q)) FROM ({query}) q")),
        "COPY as build_dataset runs it": best(copy(query)),
    }
    alternatives = {
        "COPY without ORDER BY (file order not deterministic)": best(copy(unordered)),
        "COPY from inputs compacted to one file per table": best(copy(compacted)),
        "narrow ASOF + sort, Arrow take of feature columns, pyarrow write": best(arrow_gather),
        "narrow dataset (keys, feature_ts, split, targets), sorted, written": best(copy(narrow)),
    }
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = {sql_str(scratch / 'trace.json')}")
    copy(query)()
    con.execute("PRAGMA disable_profiling")
    con.close()
    tree = json.loads((scratch / "trace.json").read_text())
    shutil.rmtree(scratch, ignore_errors=True)
    operators: list[tuple[float, str, int]] = []

    def walk(node: dict) -> None:
        name = node.get("operator_name") or node.get("operator_type") or ""
        if name and node.get("operator_timing"):
            operators.append((float(node["operator_timing"]), name.strip(), int(node.get("operator_cardinality") or 0)))
        for child in node.get("children", []):
            walk(child)

    walk(tree)
    by_type: dict[str, float] = {}
    for seconds, name, _ in operators:
        by_type[name] = by_type.get(name, 0.0) + seconds
    return {
        "build_dataset": total, "write_table": timings["write_table"], "fingerprint": timings["fingerprint"],
        "stages": stages, "alternatives": alternatives, "cpu_by_operator": sorted(by_type.items(), key=lambda kv: -kv[1]),
        "top_operators": sorted(operators, reverse=True)[:6],
    }  # fmt: skip


RUNNERS = {"ours": run_ours, "merge_asof": run_merge_asof, "ineq_join": run_ineq_join}


def worker(method: str, case_file: str) -> None:
    import resource

    case = Case(**json.loads(Path(case_file).read_text()))
    if method == "profile":
        print("RESULT " + json.dumps(run_profile(case)), flush=True)
        return
    # imports before the clock and the memory baseline
    import duckdb  # noqa: F401

    import iot_mlops.training.dataset  # noqa: F401

    if method == "merge_asof":
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    imported = peak_rss_mb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = RUNNERS[method](case)
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["import_mb"] = imported
    result["peak_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- driver


def spawn(method: str, case: Case, workdir: Path) -> dict:
    """Run one method once in a fresh process; returns its result."""
    return spawn_worker(__file__, method, case.name, asdict(case), workdir)

def clean_output(case: Case, method: str) -> None:
    target = output_file(case, method)
    shutil.rmtree(target.parent, ignore_errors=True)


SLOW_RUN_SECONDS = 60.0  # a method slower than this runs at most twice, to bound the total time


def measure(case: Case, runs: int, workdir: Path, deadline: float) -> dict[str, Result]:
    """Best-of-`runs` for every method, interleaved; repeats are skipped past the time budget."""
    results = {m: Result(m) for m in METHODS}
    for i in range(runs):
        for method in METHODS:
            res = results[method]
            done = res.seconds
            if i >= 2 and min(done) > SLOW_RUN_SECONDS:
                continue
            if i >= 1 and time.monotonic() + done[-1] * 1.3 + 5 > deadline:
                print(f"  {case.name:<14} run {i + 1}/{runs} {method:<10} skipped: time budget", flush=True)
                continue
            clean_output(case, method)
            r = spawn(method, case, workdir)
            res.seconds.append(r["seconds"])
            res.peak_mb.append(r["peak_mb"])
            res.import_mb.append(r["import_mb"])
            res.cpu_seconds.append(r["cpu_seconds"])
            res.rows = r["rows"]
            if r.get("stages") and (not res.stages or r["seconds"] <= res.best):
                res.stages = r["stages"]
            if method == "ours":
                res.stages["window"] = r["window"]
                res.stages["bounds"] = r["bounds"]
            print(f"  {case.name:<14} run {i + 1}/{runs} {method:<10} {r['seconds']:7.2f} s  (CPU {r['cpu_seconds']:6.2f} s)  "
                  f"peak {r['peak_mb']:7.0f} MB  {r['rows']:,} rows", flush=True)  # fmt: skip
    return results


def compare(case: Case, results: dict[str, Result]) -> tuple[list[str], dict]:
    """Problems found comparing each method's file with ours (empty when equal), and facts about ours."""
    from iot_mlops.lake import connect, ident, sql_str

    problems: list[str] = []
    ours_run = results["ours"].stages
    if ours_run.get("window") != [case.start, case.end] or ours_run.get("bounds") != case.bounds:
        problems.append(f"ours used window {ours_run.get('window')} and bounds {ours_run.get('bounds')}, "
                        f"the others {[case.start, case.end]} and {case.bounds}")  # fmt: skip
    ours_file = output_file(case, "ours")
    con = connect()
    con.execute("SET preserve_insertion_order = true")
    src = lambda path: f"read_parquet({sql_str(path)})"  # noqa: E731
    schema = lambda path: [(n, t) for n, t, *_ in con.execute(f"DESCRIBE SELECT * FROM {src(path)}").fetchall()]  # noqa: E731
    ours_schema = schema(ours_file)
    facts = dict(zip(
        ("rows", "exact", "mean_age_min", "max_age_min"),
        con.execute(f"SELECT count(*), count(*) FILTER (WHERE ts = feature_ts), avg(date_diff('second', feature_ts, ts)) / 60, "
                    f"max(date_diff('second', feature_ts, ts)) / 60 FROM {src(ours_file)}").fetchone(),
    ))  # fmt: skip
    for method in METHODS[1:]:
        other = output_file(case, method)
        theirs_schema = schema(other)
        if [n for n, _ in theirs_schema] != [n for n, _ in ours_schema]:
            problems.append(f"{method}: columns differ from ours: only in ours {sorted(set(dict(ours_schema)) - set(dict(theirs_schema)))}, "
                            f"only in {method} {sorted(set(dict(theirs_schema)) - set(dict(ours_schema)))}, "
                            f"same set in another order: {set(dict(ours_schema)) == set(dict(theirs_schema))}")  # fmt: skip
            continue
        types = [f"{n}: ours {t} vs {dict(theirs_schema)[n]}" for n, t in ours_schema if dict(theirs_schema)[n] != t]
        if types:
            problems.append(f"{method}: column types differ: {types[:5]}")
        (n_ours,), (n_theirs,) = (con.execute(f"SELECT count(*) FROM {src(p)}").fetchone() for p in (ours_file, other))
        if n_ours != n_theirs:
            keys = "device_id, ts"
            only_ours = con.execute(f"SELECT {keys} FROM {src(ours_file)} EXCEPT SELECT {keys} FROM {src(other)} ORDER BY ts LIMIT 3").fetchall()
            only_theirs = con.execute(f"SELECT {keys} FROM {src(other)} EXCEPT SELECT {keys} FROM {src(ours_file)} ORDER BY ts LIMIT 3").fetchall()
            problems.append(f"{method}: {n_theirs:,} rows, ours {n_ours:,}; label rows only in ours e.g. {only_ours}, only in {method} e.g. {only_theirs}")
            continue
        # row by row in file order; NaN and NULL are the same missing value (pandas writes NaN as NULL)
        norm = lambda side, n, t: (f"(CASE WHEN isnan({side}.{ident(n)}) THEN NULL ELSE {side}.{ident(n)} END)"  # noqa: E731
                                   if t in ("DOUBLE", "FLOAT") else f"{side}.{ident(n)}")
        diffs = [f"count(*) FILTER (WHERE {norm('a', n, t)} IS DISTINCT FROM {norm('b', n, t)})" for n, t in ours_schema]
        counts = con.execute(f"SELECT {', '.join(diffs)} FROM {src(ours_file)} a POSITIONAL JOIN {src(other)} b").fetchone()
        for (name, dtype), bad in zip(ours_schema, counts):
            if bad:
                examples = con.execute(
                    f"SELECT a.device_id, a.ts, a.{ident(name)}, b.{ident(name)} FROM {src(ours_file)} a POSITIONAL JOIN {src(other)} b "
                    f"WHERE {norm('a', name, dtype)} IS DISTINCT FROM {norm('b', name, dtype)} LIMIT 3"
                ).fetchall()
                problems.append(f"{method}: column {name}: {bad:,} of {n_ours:,} rows differ from ours, e.g. "
                                + "; ".join(f"{d} {ts}: ours={x!r} {method}={y!r}" for d, ts, x, y in examples))  # fmt: skip
    con.close()
    return problems, facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 minute)")
    parser.add_argument("--runs", type=int, help="runs per method; the best time is reported (default 3, quick 1)")
    parser.add_argument("--cases", default="azure_pdm,water_heaters", help="comma-separated subset of azure_pdm,water_heaters")
    parser.add_argument("--devices", type=int, help="water heaters to simulate (default 1000, quick 100)")
    parser.add_argument("--days", type=int, help="days of water-heater telemetry (default 30, quick 5)")
    parser.add_argument("--every", type=int, help="minutes between a heater's entity rows (default 30, quick 10)")
    parser.add_argument("--workdir", help="keep the lakes here (and reuse them next time if code and parameters are unchanged)")
    parser.add_argument("--budget", type=float, help="seconds after which repeat runs are skipped (default 400, quick 45)")
    parser.add_argument("--profile", action="store_true", help="also break down where ours spends its time (one more run per case)")
    parser.add_argument("--worker", choices=[*METHODS, "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--case-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.case_file)
        return 0

    began = time.perf_counter()
    began_mono = time.monotonic()
    budget = args.budget or (45.0 if args.quick else 400.0)
    runs = args.runs or (1 if args.quick else 3)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="iot_mlops_bench_dataset_"))
    workdir.mkdir(parents=True, exist_ok=True)
    import duckdb
    import pandas as pd

    print(f"training-dataset benchmark: {'quick' if args.quick else 'full'}, best of {runs}, {os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.1f}), duckdb {duckdb.__version__}, pandas {pd.__version__}, work dir {workdir}", flush=True)  # fmt: skip
    rows_out, failures, profiles = [], [], {}
    try:
        for name in wanted:
            t = time.perf_counter()
            if name == "azure_pdm":
                case, reused = prepared(workdir, name, source_fingerprint(name, AZURE_DIR), lambda: build_azure(workdir))
            elif name == "water_heaters":
                devices, days = args.devices or (100 if args.quick else 1000), args.days or (5 if args.quick else 30)
                every = args.every or (10 if args.quick else 30)
                case, reused = prepared(workdir, name, source_fingerprint(name, devices, days, every),
                                        lambda: build_water_heaters(workdir, devices, days, every))  # fmt: skip
            else:
                raise SystemExit(f"unknown case {name!r}")
            if not reused:
                case.prep_seconds = time.perf_counter() - t
            print(f"  {case.name:<14} lake {'reused from ' + str(workdir) if reused else 'ready'} (prep {case.prep_seconds:.1f} s, not timed): "
                  f"{case.feature_rows:,} feature rows, {case.label_rows:,} complete in-service labels in {case.start} .. {case.end}; "
                  f"entity rows: {case.entities}", flush=True)  # fmt: skip
            results = measure(case, runs, workdir, began_mono + budget)
            problems, facts = compare(case, results)
            if args.profile:
                profiles[case.name] = spawn("profile", case, workdir)
            if problems:
                failures.append((case.name, problems))
            rows_out.append((case, results, facts, not problems))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    header = (f"{'case':<14} {'features':>9} {'labels':>10} {'rows out':>10} {'ours s':>7} {'merge_asof s':>12} {'ineq_join s':>11} "
              f"{'vs merge_asof':>13} {'vs ineq':>8} {'ours MB':>8} {'merge_asof MB':>13} {'ineq MB':>8}  check")  # fmt: skip
    print(header)
    print("-" * len(header))
    speedups = []
    for case, res, facts, ok in rows_out:
        ours, pandas_, ineq = res["ours"], res["merge_asof"], res["ineq_join"]
        speedup = pandas_.best / ours.best
        speedups.append(speedup)
        print(f"{case.name:<14} {case.feature_rows:>9,} {case.label_rows:>10,} {ours.rows:>10,} {ours.best:>7.2f} {pandas_.best:>12.2f} "
              f"{ineq.best:>11.2f} {speedup:>12.1f}x {ineq.best / ours.best:>7.1f}x {ours.peak:>8.0f} {pandas_.peak:>13.0f} "
              f"{ineq.peak:>8.0f}  {'equal' if ok else 'MISMATCH'}")  # fmt: skip
    print()
    for case, res, facts, _ in rows_out:
        ours, pandas_, ineq = res["ours"], res["merge_asof"], res["ineq_join"]
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in pandas_.stages.items())
        print(f"{case.name}: {case.note}; entity rows {case.entities}; rows out {facts['rows']:,} "
              f"({facts['exact']:,} on a feature timestamp, feature age mean {facts['mean_age_min']:.0f} min, max {facts['max_age_min']:.0f} min); "
              f"runs ours {[round(s, 2) for s in ours.seconds]} s, merge_asof {[round(s, 2) for s in pandas_.seconds]} s ({stages}), "
              f"ineq_join {[round(s, 2) for s in ineq.seconds]} s; least CPU ours {min(ours.cpu_seconds):.2f} s, merge_asof "
              f"{min(pandas_.cpu_seconds):.2f} s, ineq_join {min(ineq.cpu_seconds):.2f} s; RSS after imports ours "
              f"{min(ours.import_mb):.0f} MB, merge_asof {min(pandas_.import_mb):.0f} MB")  # fmt: skip
    for name, prof in profiles.items():
        rest = prof["build_dataset"] - prof["write_table"] - prof["fingerprint"]
        cpu = sum(v for _, v in prof["cpu_by_operator"]) or 1.0
        print(f"profile {name}: build_dataset {prof['build_dataset']:.2f} s = join+sort+write (COPY) {prof['write_table']:.2f} s + "
              f"fingerprint {prof['fingerprint']:.2f} s + window and split counts {rest:.2f} s")  # fmt: skip
        print("  the COPY query cut down (wall / CPU s): " + "; ".join(f"{k} {w:.2f} / {c:.2f}" for k, (w, c) in prof["stages"].items()))
        print("  candidate changes, same inputs (wall / CPU s): " + "; ".join(f"{k} {w:.2f} / {c:.2f}" for k, (w, c) in prof["alternatives"].items()))
        print("  COPY CPU by operator: " + ", ".join(f"{k} {v:.2f} s ({v / cpu:.0%})" for k, v in prof["cpu_by_operator"][:7]))
        print("  top operators: " + ", ".join(f"{n} {s_:.2f} s ({rows:,} rows)" for s_, n, rows in prof["top_operators"]))
    print(f"total runtime: {time.perf_counter() - began:.1f} s (load average now {os.getloadavg()[0]:.1f})")
    for name, problems in failures:
        print(f"\nMISMATCH in {name}: the methods disagree:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    if failures:
        return 1
    if speedups:
        print(f"speedup_vs_merge_asof: {min(speedups):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
