#!/usr/bin/env python
"""Benchmark: feature computation, ours (`iot_mlops.features`, DuckDB) vs idiomatic Polars and pre-bucketed pandas.

Run on demand from the repository root (offline; nothing is downloaded):

    python bench/features.py           # full run, median of 3 runs of every side
    python bench/features.py --tiny    # a few machines x a few days and 50 heaters (CI runs this)

Two cases, each a Parquet lake in the lake layout, written before anything is timed:

* ``azure_pdm``: an Azure-PdM-shaped fleet the size of the public data set, 100 machines x 8,761
  hourly rows (2015-01-01 06:00 .. 2016-01-01 06:00), tiled from the real 20-machine Q1 slice over
  machines and quarters, with its errors, maintenance, failures and machines. Profile
  ``profiles/azure_pdm.yaml`` (3 h steps, 3 h and 24 h mean and std, 24 h error counts).
* ``water_heaters``: the simulator at 10,000 devices x 1 day of 1-minute telemetry (14.4 M rows)
  plus the events of the 30 days before. Profile ``profiles/water_heaters.yaml`` without its
  device-relative features (the peers have none).

Three sides, each run in a fresh process (bench/harness.py), timed around the work only; all read
the same lake files (telemetry of the range and its look-back, all events up to its end, devices):

* ours: ``iot_mlops.features.compute.compute_features``, what the Dagster asset runs: computes the
  features of every day of the range in one query, writes one fsynced zstd Parquet file per day
  (atomically) and refreshes the online table (the newest row per device);
* polars: ``features_peers.polars_side``, idiomatic Polars (a lazy ``group_by`` over ``dt.truncate``d times,
  ``rolling_*_by(...).over(device)``, ``join_asof``), zstd Parquet partitioned by day, a file of the newest row
  per device;
* pandas: ``features_peers.pandas_side``, pandas that first aggregates per device and step bucket,
  then rolls over the buckets; the same output with ``to_parquet(partition_cols=...)``.
The peers' files are fsynced by ``harness.fsync_tree``; they write no temp files and rename nothing.
Their outputs must equal ours (rows by device and time, every column within 1e-6); otherwise the run
exits 1 without the key lines ``speedup_vs_polars`` and ``speedup_vs_pandas`` (their median seconds
over ours, the smaller of the two cases).
"""

from __future__ import annotations

import math
import shutil
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import features_peers as peers  # noqa: E402
from harness import AZURE_DIR, ROOT, finish, frame_problems, machine_line, measure, parser, run_worker, table, workdir  # noqa: E402

SIDES = ["ours", "polars", "pandas"]


def _attributes(profile, source: str) -> str:
    spec = profile.source.devices
    cols = [f"CAST({a.source_column} AS {'DOUBLE' if a.kind == 'numeric' else 'VARCHAR'}) AS {a.name}" for a in spec.attributes]
    return f"SELECT CAST({spec.device_column or profile.device_column} AS VARCHAR) AS device_id, {', '.join(cols)} FROM {source} ORDER BY 1"


def _write_lake(con, lake, profile, first_day: date) -> None:
    """Write the temp tables `tel` (device_id, ts, sensors) and `ev` (device_id, ts, kind, value) as daily partitions.

    Telemetry outside a sensor's range is dropped (ingestion quarantines it); events from before the first day go into
    its partition, as ingestion writes them.
    """
    from iot_mlops.lake import sql_str

    ranges = " AND ".join(f"{s.name} BETWEEN {s.min} AND {s.max}" for s in profile.sensors)
    cols = ", ".join(["device_id", "ts", *profile.sensor_names])
    for name, order, where in (("tel", "device_id, ts", ranges), ("ev", "ts, device_id, kind, value", "true")):
        day = f"greatest(CAST(ts AS DATE), DATE {sql_str(first_day)})"
        for (d,) in con.execute(f"SELECT DISTINCT {day} FROM {name} ORDER BY 1").fetchall():
            select = cols if name == "tel" else "device_id, ts, kind, value"
            lake.write_partition(con, profile.name, "telemetry" if name == "tel" else "events", d,
                                 f"SELECT {select} FROM {name} WHERE {day} = DATE {sql_str(d)} AND {where} ORDER BY {order}")  # fmt: skip


def _case(name: str, workdir: Path, profile_path: Path, lake_root: Path, first_day: date, note: str) -> dict:
    """The case: feature days from the first telemetry day to the day of the last bucket's label, and the files read."""
    import pyarrow.parquet as pq

    from iot_mlops.features.compute import lookback_days
    from iot_mlops.lake import Lake
    from iot_mlops.profiles import load_profile

    profile, lake = load_profile(profile_path), Lake(lake_root)
    last_file = lake.files(profile.name, "telemetry")[-1]
    last_ts = pq.read_table(last_file, columns=["ts"]).column("ts").to_pandas().max().to_pydatetime()
    last_label = datetime.min + ((last_ts - datetime.min) // profile.features.step + 1) * profile.features.step
    days = [first_day + timedelta(days=i) for i in range((last_label.date() - first_day).days + 1)]
    reach = [days[-1] - timedelta(days=i) for i in range(len(days) + lookback_days(profile))][::-1]
    tel_files = [str(f) for f in lake.files(profile.name, "telemetry", reach)]
    return {"name": name, "profile": str(profile_path), "lake": str(lake_root), "out": str(workdir / name / "out"),
            "days": [d.isoformat() for d in days], "telemetry": tel_files,
            "events": [str(f) for f in lake.files(profile.name, "events", [d for d in lake.partitions(profile.name, "events") if d <= days[-1]])],
            "devices": str(lake.table_file(profile.name, "devices")), "note": note,
            "input_rows": sum(pq.ParquetFile(f).metadata.num_rows for f in tel_files)}  # fmt: skip


def build_azure(workdir: Path, machines: int, days: int | None) -> dict:
    """Tile the real 20-machine Q1 slice to `machines` machines over 2015 (or its first `days` days)."""
    from iot_mlops.lake import Lake, connect, sql_str
    from iot_mlops.profiles import load_profile

    profile_path = ROOT / "profiles" / "azure_pdm.yaml"
    profile, lake_root = load_profile(profile_path), workdir / "azure_pdm" / "lake"
    src = lambda name: f"read_parquet({sql_str(AZURE_DIR / (name + '.parquet'))})"  # noqa: E731
    con = connect()
    n_src, t0, t1 = con.execute(f"SELECT count(DISTINCT machine_id), min(datetime), max(datetime) FROM {src('telemetry')}").fetchone()
    period = t1 - t0 + timedelta(hours=1)  # 90 days
    last_ts = datetime(2016, 1, 1, 6) if days is None else t0 + timedelta(days=days) - timedelta(hours=1)
    quarters, tiles = math.ceil((last_ts - t0 + timedelta(hours=1)) / period), math.ceil(machines / n_src)
    sensors = ", ".join(f"CAST(t.{s.source_column} AS DOUBLE) AS {s.name}" for s in profile.sensors)
    con.execute(f"""CREATE TEMP TABLE tel AS SELECT * EXCLUDE (num) FROM (
        SELECT CAST(t.machine_id + {n_src} * k.range AS VARCHAR) AS device_id, t.machine_id + {n_src} * k.range AS num,
               t.datetime + to_days(CAST({period.days} * q.range AS INTEGER)) AS ts, {sensors}
        FROM {src('telemetry')} t, range({tiles}) k, range({quarters}) q) WHERE num <= {machines} AND ts <= TIMESTAMP {sql_str(last_ts)}""")
    events = [f"SELECT CAST({s.device_column or profile.device_column} AS VARCHAR) AS device_id, "
              f"CAST({s.timestamp_column or profile.timestamp_column} AS TIMESTAMP) AS ts, {sql_str(s.kind)} AS kind, "
              f"CAST({s.value_column} AS VARCHAR) AS value FROM read_parquet({sql_str(AZURE_DIR / s.path)})" for s in profile.source.events]  # fmt: skip
    con.execute(f"CREATE TEMP TABLE ev AS SELECT * FROM ({' UNION ALL '.join(events)}) WHERE ts <= TIMESTAMP {sql_str(last_ts)}")
    _write_lake(con, Lake(lake_root), profile, t0.date())
    Lake(lake_root).write_table(con, profile.name, "devices", _attributes(profile, f"read_parquet({sql_str(AZURE_DIR / profile.source.devices.path)})"))
    con.close()
    return _case("azure_pdm", workdir, profile_path, lake_root, t0.date(),
                 f"{machines} machines (real {n_src}-machine slice tiled x{tiles}), {quarters} quarter(s) tiled, to {last_ts}")  # fmt: skip


def build_water_heaters(workdir: Path, devices: int, history_days: int) -> dict:
    """Simulate one day of 1-minute telemetry for `devices` heaters, with `history_days` days of events before it."""
    import pandas as pd
    import yaml

    from iot_mlops.lake import Lake, connect
    from iot_mlops.profiles import load_profile
    from iot_mlops.sources.landing import simulator_for

    shipped = yaml.safe_load((ROOT / "profiles" / "water_heaters.yaml").read_text())
    shipped["features"].pop("relative", None)  # the peers have no device-relative features
    shipped["source"]["simulator"]["devices"] = devices
    profile_path = workdir / "water_heaters.yaml"
    profile_path.write_text(yaml.safe_dump(shipped, sort_keys=False))
    profile, lake_root = load_profile(profile_path), workdir / "water_heaters" / "lake"
    sim, src = simulator_for(profile), profile.source
    day = src.simulator.epoch + timedelta(days=history_days)  # a day with failure build-ups behind it
    con = connect()
    telemetry = sim.telemetry(day)  # noqa: F841 - read by DuckDB below
    sensors = ", ".join(f"CAST({s.source_column} AS DOUBLE) AS {s.name}" for s in profile.sensors)
    con.execute(f"CREATE TEMP TABLE tel AS SELECT CAST({src.telemetry.device_column or profile.device_column} AS VARCHAR) AS device_id, "
                f"CAST({src.telemetry.timestamp_column or profile.timestamp_column} AS TIMESTAMP) AS ts, {sensors} FROM telemetry")  # fmt: skip
    kinds = {e.path.split("/")[0]: e for e in src.events}
    events = pd.concat([pd.DataFrame({"device_id": f[kinds[k].device_column or profile.device_column].astype(str),
                                  "ts": f[kinds[k].timestamp_column or profile.timestamp_column].astype("datetime64[us]"),
                                  "kind": kinds[k].kind, "value": f[kinds[k].value_column].astype(str)})
                    for i in range(history_days + 1) for k, f in sim.events(src.simulator.epoch + timedelta(days=i)).items()])  # fmt: skip
    con.execute("CREATE TEMP TABLE ev AS SELECT * FROM events")
    sim_devices = sim.devices()  # noqa: F841 - read by DuckDB below
    con.execute("CREATE TEMP TABLE sim AS SELECT * FROM sim_devices")
    _write_lake(con, Lake(lake_root), profile, src.simulator.epoch)
    Lake(lake_root).write_table(con, profile.name, "devices", _attributes(profile, "sim"))
    con.close()
    return _case("water_heaters", workdir, profile_path, lake_root, day,
                 f"{devices:,} heaters x 1 day ({day}) of 1-min telemetry, {len(events):,} events over {history_days + 1} days")  # fmt: skip


def ours(case: dict) -> dict:
    """The project's code path: compute_features over the whole range in one run (it fsyncs its files)."""
    from iot_mlops.features.compute import compute_features
    from iot_mlops.lake import Lake, connect
    from iot_mlops.profiles import load_profile

    profile, lake = load_profile(Path(case["profile"])), Lake(Path(case["lake"]))
    con = connect()
    try:
        report = compute_features(con, lake, profile, [date.fromisoformat(d) for d in case["days"]])
    finally:
        con.close()
    return {"out": str(lake.table_dir(profile.name, "features")), "rows": sum(report.rows.values()), "features": len(report.columns) - 2}


def prepare(side: str) -> None:
    import pyarrow.parquet  # noqa: F401

    import iot_mlops.features.compute  # noqa: F401

    if side == "polars":
        import polars  # noqa: F401
    if side == "pandas":
        import pandas  # noqa: F401


def read_output(folder: str):
    """Every Parquet file below a side's output folder, as one pandas frame (partition columns left out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f, partitioning=None) for f in sorted(Path(folder).rglob("*.parquet"))]
    return pa.concat_tables([t.drop_columns([c for c in ("date",) if c in t.column_names]) for t in tables], promote_options="permissive").to_pandas()


def main() -> int:
    args = parser(__doc__, SIDES).parse_args()
    if args.worker:
        run_worker({"ours": ours, "polars": peers.polars_side, "pandas": peers.pandas_side}, args.worker, args.case_file, prepare=prepare)
        return 0
    print(machine_line("features", "duckdb", "polars", "pandas", "pyarrow"), flush=True)
    rows, problems, ratios = [], [], {"polars": [], "pandas": []}
    with workdir(args, "features") as work:
        builds = [lambda: build_azure(work, 3, 4), lambda: build_water_heaters(work, 50, 3)] if args.tiny else \
                 [lambda: build_azure(work, 100, None), lambda: build_water_heaters(work, 10_000, 30)]  # fmt: skip
        for build in builds:
            case = build()
            print(f"  {case['name']:<14} {case['input_rows']:,} telemetry rows ({case['note']}); "
                  f"features for {case['days'][0]} .. {case['days'][-1]}", flush=True)  # fmt: skip

            def clean(side: str, case=case) -> None:
                lake_fleet = Path(case["lake"]) / Path(case["profile"]).stem
                for folder in [lake_fleet / "features", lake_fleet / "online_features"] if side == "ours" else [Path(case["out"]) / side]:
                    shutil.rmtree(folder, ignore_errors=True)

            res = measure(__file__, SIDES, case, work, runs=args.runs, before_each=clean, label=case["name"])
            mine = read_output(res["ours"].last["out"])
            for side in SIDES[1:]:
                problems += frame_problems(mine, read_output(res[side].last["out"]), ["device_id", "ts"], f"{case['name']} {side}")
                ratios[side].append(res[side].median / res["ours"].median)
            med = {s: res[s].median for s in SIDES}
            rows.append([case["name"], case["input_rows"], len(mine), res["ours"].last["features"], med["ours"], med["polars"], med["pandas"],
                         f"{med['polars'] / med['ours']:.2f}x", f"{med['pandas'] / med['ours']:.2f}x",
                         " / ".join(f"{res[s].peak:.0f}" for s in SIDES)])  # fmt: skip
    print()
    table(["case", "telemetry rows", "feature rows", "features", "ours s", "polars s", "pandas s", "polars/ours", "pandas/ours",
           "peak MB ours/polars/pandas"], rows)  # fmt: skip
    print(f"median of {args.runs} run(s) per side; seconds inside each worker, imports excluded; peak: worker's own resident set")
    return finish(problems, {"speedup_vs_polars": min(ratios["polars"]), "speedup_vs_pandas": min(ratios["pandas"])})


if __name__ == "__main__":
    sys.exit(main())
