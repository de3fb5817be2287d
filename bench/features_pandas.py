"""The pandas baselines of bench/features.py: the same features as iot_mlops.features, two ways.

* ``straightforward_features``: what a data scientist would write first. For each window,
  ``groupby(device).rolling(window, on=ts, closed="left")`` over the raw telemetry rows
  (mean, std, min, max), read at one probe row per device and feature time t (the probe sorts
  before any reading at t, so the window is [t - window, t)); first differences, percent
  change and interactions of the step means (the rolling mean over one step); error counts
  by the same rolling over indicator columns of the error events; hours since the last event
  of each kind by ``merge_asof``; a merge for device attributes.
* ``bucketed_features``: pre-aggregated per device and step bucket first (count, sum, sum
  of squares, min, max), then ``groupby().rolling()`` over the buckets: what ours does, in
  pandas. Faster; shown for transparency.

A row at time t describes a device with data from before t: buckets [t - step, t) are
labelled by their right edge t (aligned like DuckDB's time_bucket, origin 2000-01-03).
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path

from iot_mlops.features.sql import window_label  # noqa: E402

DUCKDB_TIME_BUCKET_ORIGIN = "2000-01-03"  # time_bucket's default origin for sub-month widths




def straightforward_features(profile, tel, events, devices, start: datetime, end: datetime):
    """The profile's features from the raw rows with pandas rolling windows, for t in [start, end)."""
    import numpy as np
    import pandas as pd

    spec = profile.features
    sensors = profile.sensor_names
    step = pd.Timedelta(spec.step)
    origin = pd.Timestamp(DUCKDB_TIME_BUCKET_ORIGIN)
    # Feature times: the right edge of every step with telemetry; one probe row per device and time.
    probes = tel[["device_id", "ts"]].copy()
    probes["ts"] = probes["ts"] - (probes["ts"] - origin) % step + step
    probes = probes.drop_duplicates(ignore_index=True)
    probes["probe"] = True
    frame = pd.concat([probes, tel.assign(probe=False)], ignore_index=True)
    # A probe sorts before a reading at its own time: closed="left" then gives [t - window, t).
    frame["_late"] = ~frame["probe"]
    frame = frame.sort_values(["device_id", "ts", "_late"], kind="stable", ignore_index=True).drop(columns="_late")
    at_probe = frame["probe"].to_numpy()
    feats = frame.loc[at_probe, ["device_id", "ts"]].reset_index(drop=True)
    out = {}
    windows = list(spec.windows) + ([spec.step] if spec.differences or spec.interactions else [])
    for window in dict.fromkeys(windows):
        label = window_label(window)
        rolling = frame.groupby("device_id", sort=False).rolling(pd.Timedelta(window), on="ts", closed="left")[sensors]
        for agg in ("mean", "std", "min", "max"):
            if agg in spec.aggregations or (agg == "mean" and window == spec.step):
                values = getattr(rolling, agg)()[sensors].to_numpy()[at_probe]  # groups in order: rows stay aligned
                for i, s in enumerate(sensors):
                    out[f"{s}_{agg}_{label}"] = values[:, i]
    step_mean = {s: pd.Series(out[f"{s}_mean_{window_label(spec.step)}"]) for s in sensors}
    if spec.differences:
        previous = feats.groupby("device_id", sort=False)["ts"].shift(1)
        consecutive = (feats["ts"] - previous == step).to_numpy()
        for s in sensors:
            prev = step_mean[s].groupby(feats["device_id"]).shift(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"{s}_diff"] = np.where(consecutive, step_mean[s] - prev, np.nan)
                out[f"{s}_pct_change"] = np.where(consecutive & (prev != 0), (step_mean[s] - prev) / prev.abs(), np.nan)
    for inter in spec.interactions:
        left, right = step_mean[inter.left], step_mean[inter.right]
        out[inter.name] = {"difference": lambda: left - right, "ratio": lambda: left / right.where(right != 0), "product": lambda: left * right}[inter.op]().to_numpy()
    columns = [f"{s}_{agg}_{window_label(w)}" for w in spec.windows for s in sensors for agg in ("mean", "std", "min", "max") if agg in spec.aggregations]
    if spec.differences:
        columns += [f"{s}_{kind}" for s in sensors for kind in ("diff", "pct_change")]
    columns += [inter.name for inter in spec.interactions]
    feats = pd.concat([feats, pd.DataFrame({c: out[c] for c in columns})], axis=1)
    del frame, out
    feats = feats[(feats["ts"] >= start) & (feats["ts"] < end)].reset_index(drop=True)

    # Error counts in [t - error_window, t): the same rolling, over indicator columns of the events.
    codes = list(profile.error_codes)
    if codes:
        errors = events.loc[events["kind"] == "error", ["device_id", "ts", "value"]]
        flags = pd.DataFrame({"device_id": errors["device_id"], "ts": errors["ts"]})
        for code in codes:
            flags[code] = (errors["value"] == code).astype("float64")
        both = pd.concat([feats[["device_id", "ts"]].assign(_late=False), flags.assign(_late=True)], ignore_index=True)
        both = both.sort_values(["device_id", "ts", "_late"], kind="stable", ignore_index=True)
        is_probe = ~both["_late"].to_numpy()
        counts = both.groupby("device_id", sort=False).rolling(pd.Timedelta(spec.error_window), on="ts", closed="left")[codes].sum()
        keyed = both.loc[is_probe, ["device_id", "ts"]].reset_index(drop=True)
        counted = pd.DataFrame(counts[codes].to_numpy()[is_probe], columns=codes).fillna(0).astype("int64")
        keyed = pd.concat([keyed, counted], axis=1)
        feats = feats.merge(keyed, on=["device_id", "ts"], how="left")
        feats = feats.rename(columns={code: f"errors_{code.lower()}_{window_label(spec.error_window)}" for code in codes})

    # Hours since the last maintenance of each component and the last error of each code, before t.
    since = [("maintenance", comp, f"hours_since_maint_{comp}") for comp in profile.components]
    since += [("error", code, f"hours_since_error_{code.lower()}") for code in codes]
    feats = feats.sort_values("ts", kind="stable", ignore_index=True)
    for kind, value, name in since:
        last = events.loc[(events["kind"] == kind) & (events["value"] == value), ["device_id", "ts"]]
        last = last.rename(columns={"ts": "last_ts"}).sort_values("last_ts")
        merged = pd.merge_asof(feats[["device_id", "ts"]], last, left_on="ts", right_on="last_ts", by="device_id", allow_exact_matches=False)
        feats[name] = ((merged["ts"] - merged["last_ts"]).dt.total_seconds() / 3600.0).to_numpy()

    attributes = [a.name for a in profile.source.devices.attributes]
    feats = feats.merge(devices[["device_id", *attributes]], on="device_id", how="left")
    return feats.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)


def bucketed_features(profile, tel, events, devices, start: datetime, end: datetime):
    """The profile's features in plain pandas, for feature times t in [start, end).

    A row at time t describes a device with data from before t: buckets [t - step, t) are
    labelled by their right edge t; a window w covers the buckets labelled (t - w, t].
    """
    import numpy as np
    import pandas as pd

    spec = profile.features
    sensors = profile.sensor_names
    step = pd.Timedelta(spec.step)
    aggs = spec.aggregations

    # 1. one row per device and step bucket: count, sum, sum of squares, min, max
    origin = pd.Timestamp(DUCKDB_TIME_BUCKET_ORIGIN)
    tel["t"] = tel["ts"] - (tel["ts"] - origin) % step + step
    named = {}
    for s in sensors:
        named[f"{s}__n"] = (s, "count")
        named[f"{s}__sum"] = (s, "sum")
        if "std" in aggs:
            tel[f"{s}__sq"] = tel[s] * tel[s]
            named[f"{s}__sq"] = (f"{s}__sq", "sum")
        if "min" in aggs:
            named[f"{s}__min"] = (s, "min")
        if "max" in aggs:
            named[f"{s}__max"] = (s, "max")
    b = tel.groupby(["device_id", "t"], sort=True).agg(**named).reset_index()
    del tel

    # 2. rolling windows over the buckets, per device
    out = {"device_id": b["device_id"].to_numpy(), "ts": b["t"].to_numpy()}
    by_device = b.groupby("device_id", sort=False)
    for window in spec.windows:
        label = window_label(window)
        rolling = by_device.rolling(pd.Timedelta(window), on="t")
        sums = rolling[[c for s in sensors for c in (f"{s}__n", f"{s}__sum") + ((f"{s}__sq",) if "std" in aggs else ())]].sum()
        mins = rolling[[f"{s}__min" for s in sensors]].min() if "min" in aggs else None
        maxs = rolling[[f"{s}__max" for s in sensors]].max() if "max" in aggs else None
        for s in sensors:
            n = sums[f"{s}__n"].to_numpy()
            total = sums[f"{s}__sum"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                if "mean" in aggs:
                    out[f"{s}_mean_{label}"] = np.where(n > 0, total / n, np.nan)
                if "std" in aggs:
                    sq = sums[f"{s}__sq"].to_numpy()
                    var = np.where(n > 1, (sq - total * total / n) / (n - 1), np.nan)
                    out[f"{s}_std_{label}"] = np.sqrt(np.maximum(var, 0))  # NaN stays NaN
            if "min" in aggs:
                out[f"{s}_min_{label}"] = mins[f"{s}__min"].to_numpy()
            if "max" in aggs:
                out[f"{s}_max_{label}"] = maxs[f"{s}__max"].to_numpy()

    # 3. first differences and percent change of step means, interactions of step means
    mean = {s: b[f"{s}__sum"] / b[f"{s}__n"].where(b[f"{s}__n"] != 0) for s in sensors}
    if spec.differences:
        consecutive = (b["t"] - by_device["t"].shift(1)) == step
        for s in sensors:
            prev = mean[s].groupby(b["device_id"], sort=False).shift(1)
            out[f"{s}_diff"] = (mean[s] - prev).where(consecutive).to_numpy()
            out[f"{s}_pct_change"] = ((mean[s] - prev) / prev.abs().where(prev != 0)).where(consecutive).to_numpy()
    for inter in spec.interactions:
        left, right = mean[inter.left], mean[inter.right]
        value = {"difference": lambda: left - right, "ratio": lambda: left / right.where(right != 0), "product": lambda: left * right}[inter.op]()
        out[inter.name] = value.to_numpy()
    feats = pd.DataFrame(out)
    del b, by_device, out
    feats = feats[(feats["ts"] >= start) & (feats["ts"] < end)].sort_values("ts", kind="stable").reset_index(drop=True)

    # 4. error counts in [t - error_window, t): cumulative counts before t and before t - window
    window = pd.Timedelta(spec.error_window)
    errors = events[events["kind"] == "error"]
    keys = feats[["device_id", "ts"]]
    before = keys.assign(ts=keys["ts"] - window)  # still sorted by ts
    for code in profile.error_codes:
        e = errors.loc[errors["value"] == code, ["device_id", "ts"]].sort_values("ts", kind="stable")
        e["seen"] = e.groupby("device_id").cumcount() + 1
        def seen_before(left):
            merged = pd.merge_asof(left, e, on="ts", by="device_id", allow_exact_matches=False)
            return merged["seen"].fillna(0).to_numpy(dtype="int64")
        feats[f"errors_{code.lower()}_{window_label(spec.error_window)}"] = seen_before(keys) - seen_before(before)

    # 5. hours since the last maintenance of each component and the last error of each code, strictly before t
    since = [("maintenance", comp, f"hours_since_maint_{comp}") for comp in profile.components]
    since += [("error", code, f"hours_since_error_{code.lower()}") for code in profile.error_codes]
    for kind, value, name in since:
        last = events.loc[(events["kind"] == kind) & (events["value"] == value), ["device_id", "ts"]]
        last = last.rename(columns={"ts": "last_ts"}).sort_values("last_ts")
        merged = pd.merge_asof(keys, last, left_on="ts", right_on="last_ts", by="device_id", allow_exact_matches=False)
        feats[name] = ((merged["ts"] - merged["last_ts"]).dt.total_seconds() / 3600.0).to_numpy()

    # 6. static device attributes
    attributes = [a.name for a in profile.source.devices.attributes]
    feats = feats.merge(devices[["device_id", *attributes]], on="device_id", how="left")
    return feats.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)


def run_pandas(case, implementation: str, out: Path, every: int = 1) -> dict:
    """Read the same lake partitions, compute with pandas, write one file per day into `out`.

    `implementation`: "straightforward" or "bucketed". With `every` > 1, only every
    `every`-th device (in sorted order of the devices table) is read and computed.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    from iot_mlops.features.compute import lookback_days
    from iot_mlops.profiles import load_profile

    profile = load_profile(Path(case.profile))
    days = [date.fromisoformat(d) for d in case.days]
    lake = Path(case.lake) / profile.name
    compute = {"straightforward": straightforward_features, "bucketed": bucketed_features}[implementation]
    stages = {}
    clock = time.perf_counter()
    start = clock

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    def partition_files(table, wanted):
        folder = lake / table
        return [f for d in wanted if (f := folder / f"date={d.isoformat()}" / "data.parquet").is_file()]

    first, last = min(days), max(days)
    reach = (last - first).days + 1 + lookback_days(profile)
    devices = pd.read_parquet(lake / "devices" / "data.parquet")
    subset = None
    if every > 1:
        devices = devices[devices["device_id"].isin(sorted(devices["device_id"])[::every])]
        subset = [("device_id", "in", list(devices["device_id"]))]
    tel = pq.read_table(partition_files("telemetry", [last - timedelta(days=i) for i in range(reach)][::-1]), partitioning=None, filters=subset).to_pandas()
    all_event_days = sorted(date.fromisoformat(p.name[5:]) for p in (lake / "events").glob("date=*"))
    events = pq.read_table(partition_files("events", [d for d in all_event_days if d <= last]), partitioning=None, filters=subset).to_pandas()
    lap("read")
    feats = compute(profile, tel, events, devices, datetime.combine(first, datetime.min.time()), datetime.combine(last + timedelta(days=1), datetime.min.time()))
    lap("compute")
    floats = feats.select_dtypes("float").columns
    feats[floats] = feats[floats].round(6)
    written = set()
    for day, part in feats.groupby(feats["ts"].dt.floor("D"), sort=True):
        target = out / f"date={day.date().isoformat()}" / "data.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(target, compression="zstd", index=False)
        written.add(day.date())
    for day in set(days) - written:  # like ours, an empty partition for a day without rows
        target = out / f"date={day.isoformat()}" / "data.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        feats.iloc[:0].to_parquet(target, compression="zstd", index=False)
    newest = feats.loc[feats.groupby("device_id")["ts"].idxmax()].sort_values("device_id")
    newest.to_parquet(out / "online_features.parquet", compression="zstd", index=False)
    lap("write")
    return {"seconds": time.perf_counter() - start, "rows": len(feats), "features": feats.shape[1] - 2, "stages": stages, "input_rows": len(tel)}


