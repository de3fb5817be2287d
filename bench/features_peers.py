"""The peers of bench/features.py: the features of `iot_mlops.features` in idiomatic Polars and in pandas.

Both aggregate per device and step bucket first (count, sum, sum of squares, min, max of each
sensor), then roll over the buckets, like ours. A feature row at time t describes a device from
data before t: the bucket [t - step, t) is labelled t, a window w covers the buckets (t - w, t].
Steps divide a day, so buckets aligned to the epoch are aligned like DuckDB's time_bucket.
Values are rounded to the decimals ours stores; files are zstd Parquet, one per day, and the
newest row per device goes to one more file (ours' online table); every file is fsynced.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from harness import fsync_tree

from iot_mlops.features.sql import DECIMALS, error_codes, has_std, window_label
from iot_mlops.profiles import load_profile


def _plan(case: dict):
    """(profile, feature times [start, end), the tracked events (kind, value, column), the error-count columns)."""
    profile = load_profile(Path(case["profile"]))
    days = [date.fromisoformat(d) for d in case["days"]]
    start, end = datetime.combine(min(days), datetime.min.time()), datetime.combine(max(days) + timedelta(days=1), datetime.min.time())
    codes = error_codes(profile)
    tracked = [("maintenance", c, f"hours_since_maint_{c}") for c in profile.components]
    tracked += [("error", code, f"hours_since_error_{code.lower()}") for code in codes]
    counts = [(code, f"errors_{code.lower()}_{window_label(profile.features.error_window)}") for code in codes]
    return profile, start, end, tracked, counts


def polars_side(case: dict) -> dict:
    """Polars: step buckets by group_by, windows by rolling_*_by over them, join_asof for the event features."""
    import polars as pl

    profile, start, end, tracked, counts = _plan(case)
    spec, sensors, step = profile.features, profile.sensor_names, profile.features.step
    stats = [e for s in sensors for e in (pl.col(s).count().alias(f"{s}__n"), pl.col(s).sum().alias(f"{s}__sum"),
             (pl.col(s) * pl.col(s)).sum().alias(f"{s}__sq"), pl.col(s).min().alias(f"{s}__min"), pl.col(s).max().alias(f"{s}__max"))]  # fmt: skip
    # A group_by on truncated times, not group_by_dynamic: that needs the rows sorted by device first, 2-3x slower here.
    b = (pl.scan_parquet(case["telemetry"], hive_partitioning=False)
         .group_by("device_id", t=pl.col("ts").dt.truncate(step) + step).agg(stats).sort("device_id", "t").collect())  # fmt: skip
    col = pl.col
    mean = {s: pl.when(col(f"{s}__n") > 0).then(col(f"{s}__sum") / col(f"{s}__n")) for s in sensors}
    out = []
    for window in spec.windows:
        label, one = window_label(window), window == step
        for s in sensors:
            roll = lambda stat, how="sum", s=s: col(f"{s}__{stat}") if one else getattr(col(f"{s}__{stat}"), f"rolling_{how}_by")(
                "t", window, closed="right").over("device_id")  # fmt: skip
            n, total, sq, lo, hi = roll("n"), roll("sum"), roll("sq"), roll("min", "min"), roll("max", "max")
            if "mean" in spec.aggregations:
                out.append(pl.when(n > 0).then(total / n).alias(f"{s}_mean_{label}"))
            if has_std(profile, window):
                var = (sq - total * total / n) / (n - 1)
                out.append(pl.when(n < 2).then(None).when(lo == hi).then(0.0).when(var < 0).then(0.0).otherwise(var.sqrt())
                           .alias(f"{s}_std_{label}"))  # fmt: skip
            out += [e.alias(f"{s}_{agg}_{label}") for agg, e in (("min", lo), ("max", hi)) if agg in spec.aggregations]
    if spec.differences:
        consecutive = (col("t") - col("t").shift(1).over("device_id")) == step
        for s in sensors:
            prev = mean[s].shift(1).over("device_id")
            out += [pl.when(consecutive).then(mean[s] - prev).alias(f"{s}_diff"),
                    pl.when(consecutive & (prev != 0)).then((mean[s] - prev) / prev.abs()).alias(f"{s}_pct_change")]  # fmt: skip
    for i in spec.interactions:
        left, right = mean[i.left], mean[i.right]
        out.append({"difference": left - right, "ratio": pl.when(right != 0).then(left / right), "product": left * right}[i.op].alias(i.name))
    feats = b.select("device_id", col("t").alias("ts"), *out).filter(col("ts").is_between(start, end, closed="left")).sort("ts")

    events = pl.read_parquet(case["events"], hive_partitioning=False).sort("ts")
    keys, earlier = feats.select("device_id", "ts"), feats.select("device_id", col("ts") - spec.error_window)
    extra = []
    for code, name in counts:
        seen = events.filter((col("kind") == "error") & (col("value") == code)).select(
            "device_id", "ts", seen=pl.int_range(1, pl.len() + 1).over("device_id"))  # fmt: skip
        at = [k.join_asof(seen, on="ts", by="device_id", allow_exact_matches=False, check_sortedness=False)["seen"].fill_null(0) for k in (keys, earlier)]
        extra.append((at[0] - at[1]).alias(name))
    for kind, value, name in tracked:
        last = events.filter((col("kind") == kind) & (col("value") == value)).select("device_id", last=col("ts"))
        joined = keys.join_asof(last, left_on="ts", right_on="last", by="device_id", allow_exact_matches=False, check_sortedness=False)
        extra.append(((joined["ts"] - joined["last"]).dt.total_microseconds() / 3.6e9).alias(name))
    attrs = profile.source.devices.attributes
    devices = pl.read_parquet(case["devices"], hive_partitioning=False).select(
        "device_id", *(col(a.name).round(DECIMALS) if a.kind == "numeric" else col(a.name) for a in attrs))  # fmt: skip
    feats = feats.with_columns(extra).join(devices, on="device_id", how="left").with_columns(pl.selectors.float().round(DECIMALS))
    feats = feats.sort("device_id", "ts")
    out_dir = Path(case["out"]) / "polars"
    feats.with_columns(date=col("ts").dt.date()).write_parquet(out_dir / "features", partition_by="date", compression="zstd", mkdir=True)
    feats.group_by("device_id").last().sort("device_id").write_parquet(out_dir / "online.parquet", compression="zstd")
    fsync_tree(out_dir)
    return {"out": str(out_dir / "features"), "rows": feats.height}


def pandas_side(case: dict) -> dict:
    """pandas: groupby over floored timestamps, groupby().rolling() over the buckets, merge_asof for the event features."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    profile, start, end, tracked, counts = _plan(case)
    spec, sensors, step = profile.features, profile.sensor_names, pd.Timedelta(profile.features.step)
    tel = pq.read_table(case["telemetry"], partitioning=None).to_pandas()
    tel["t"] = tel["ts"].dt.floor(step) + step
    for s in sensors:
        tel[f"{s}__sq"] = tel[s] * tel[s]
    named = {f"{s}__{stat}": (f"{s}__sq" if stat == "sq" else s, "sum" if stat == "sq" else agg)
             for s in sensors for stat, agg in (("n", "count"), ("sum", "sum"), ("sq", "sum"), ("min", "min"), ("max", "max"))}  # fmt: skip
    b = tel.groupby(["device_id", "t"], sort=True).agg(**named).reset_index()
    del tel
    out = {"device_id": b["device_id"].to_numpy(), "ts": b["t"].to_numpy()}
    by_device = b.groupby("device_id", sort=False)
    for window in spec.windows:
        label = window_label(window)
        rolling = by_device.rolling(pd.Timedelta(window), on="t")
        sums = rolling[[f"{s}__{x}" for s in sensors for x in ("n", "sum", "sq")]].sum()
        mins, maxs = rolling[[f"{s}__min" for s in sensors]].min(), rolling[[f"{s}__max" for s in sensors]].max()
        for s in sensors:
            n, total, sq = (sums[f"{s}__{x}"].to_numpy() for x in ("n", "sum", "sq"))
            lo, hi = mins[f"{s}__min"].to_numpy(), maxs[f"{s}__max"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                if "mean" in spec.aggregations:
                    out[f"{s}_mean_{label}"] = np.where(n > 0, total / n, np.nan)
                if has_std(profile, window):
                    var = (sq - total * total / n) / (n - 1)
                    out[f"{s}_std_{label}"] = np.where(n < 2, np.nan, np.where((lo == hi) | (var < 0), 0.0, np.sqrt(var)))
            for agg, values in (("min", lo), ("max", hi)):
                if agg in spec.aggregations:
                    out[f"{s}_{agg}_{label}"] = values
    mean = {s: b[f"{s}__sum"] / b[f"{s}__n"].where(b[f"{s}__n"] != 0) for s in sensors}
    if spec.differences:
        consecutive = (b["t"] - by_device["t"].shift(1)) == step
        for s in sensors:
            prev = mean[s].groupby(b["device_id"], sort=False).shift(1)
            out[f"{s}_diff"] = (mean[s] - prev).where(consecutive).to_numpy()
            out[f"{s}_pct_change"] = ((mean[s] - prev) / prev.abs().where(prev != 0)).where(consecutive).to_numpy()
    for i in spec.interactions:
        left, right = mean[i.left], mean[i.right]
        out[i.name] = {"difference": lambda: left - right, "ratio": lambda: left / right.where(right != 0), "product": lambda: left * right}[i.op]().to_numpy()
    feats = pd.DataFrame(out)
    del b, by_device, out
    feats = feats[(feats["ts"] >= start) & (feats["ts"] < end)].sort_values("ts", kind="stable", ignore_index=True)

    events = pq.read_table(case["events"], partitioning=None).to_pandas().sort_values("ts", kind="stable")
    keys = feats[["device_id", "ts"]]
    earlier = keys.assign(ts=keys["ts"] - pd.Timedelta(spec.error_window))  # still sorted by ts
    for code, name in counts:
        seen = events.loc[(events["kind"] == "error") & (events["value"] == code), ["device_id", "ts"]]
        seen["seen"] = seen.groupby("device_id").cumcount() + 1
        at = [pd.merge_asof(k, seen, on="ts", by="device_id", allow_exact_matches=False)["seen"].fillna(0).to_numpy("int64")
              for k in (keys, earlier)]  # fmt: skip
        feats[name] = at[0] - at[1]
    for kind, value, name in tracked:
        last = events.loc[(events["kind"] == kind) & (events["value"] == value), ["device_id", "ts"]].rename(columns={"ts": "last"})
        merged = pd.merge_asof(keys, last, left_on="ts", right_on="last", by="device_id", allow_exact_matches=False)
        feats[name] = ((merged["ts"] - merged["last"]).dt.total_seconds() / 3600.0).to_numpy()
    attrs = [a.name for a in profile.source.devices.attributes]
    feats = feats.merge(pd.read_parquet(case["devices"])[["device_id", *attrs]], on="device_id", how="left")
    floats = feats.select_dtypes("float").columns
    feats[floats] = feats[floats].round(DECIMALS)
    feats = feats.sort_values(["device_id", "ts"], kind="stable", ignore_index=True)
    out_dir = Path(case["out"]) / "pandas"
    feats.assign(date=feats["ts"].dt.date).to_parquet(out_dir / "features", partition_cols=["date"], compression="zstd", index=False)
    feats.groupby("device_id").tail(1).to_parquet(out_dir / "online.parquet", compression="zstd", index=False)
    fsync_tree(out_dir)
    return {"out": str(out_dir / "features"), "rows": len(feats)}
