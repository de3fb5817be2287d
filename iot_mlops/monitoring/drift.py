"""Drift of a day's features against the reference profile: PSI, chi-square and KS, one pass over the day.

The statistics follow Evidently's (legacy/calculations/stattests), so verdicts agree with its
DataDriftPreset configured with the same methods and thresholds: PSI with Evidently's zero fill
(drifted at PSI >= threshold), chi-square of the day's category counts against the reference's
scaled to the day (p < threshold), scipy's two-sample KS (p <= threshold). One difference: our PSI
bins are the reference's quantile bins (or one bin per value for discrete features), Evidently's
are Sturges bins over reference and current together, so PSI values differ, the verdicts rarely.
Our PSI and chi-square thresholds are also raised to what a healthy reference day reaches (calibration.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from iot_mlops.lake import Lake, connect, sql_str
from iot_mlops.monitoring.reference import (
    FeatureReference,
    ReferenceProfile,
    counts_by_bin,
    finite_values,
    profile_sql,
    value_sql,
)
from iot_mlops.monitoring.seasonal import deseasonalized, seasonal_signals
from iot_mlops.monitoring.sensor_features import DriftOverrides
from iot_mlops.monitoring.stattests import chi_square, psi
from iot_mlops.profiles.monitoring import DriftSpec

TABLE = "drift_report"


class DriftError(ValueError):
    """Drift cannot be computed: no data for the day, or a profile that does not fit it."""


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    method: str  # psi | chisquare | ks | seasonal (level against the reference's band) | untested | missing (no values today)
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    psi: float | None = None  # every numeric feature's PSI, also where KS decides
    current_count: int = 0
    reference_mean: float | None = None
    current_mean: float | None = None


@dataclass
class DriftResult:
    rows: int
    dataset_drift_share: float
    features: list[FeatureDrift] = field(default_factory=list)
    seasonal: dict[str, list[str]] = field(default_factory=dict)  # seasonal sensor -> its compared features

    @property
    def tested(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.method != "untested"]

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.tested if f.drifted]

    @property
    def share(self) -> float:
        """Share of drifted features among the tested ones, seasonal signals' features apart: those are judged by
        their level alone and start a retraining on their own (seasonal_drifted), so they neither dilute nor double."""
        seasonal = {name for names in self.seasonal.values() for name in names}
        tested = [f for f in self.tested if f.feature not in seasonal]
        return sum(f.drifted for f in tested) / len(tested) if tested else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.tested) and self.share >= self.dataset_drift_share

    @property
    def seasonal_drifted(self) -> list[str]:
        """Seasonal sensors beyond the reference: the day's level of one of their features, less the reference's
        mean for the same hour (and month), outside the band the reference held."""
        drifted = set(self.drifted)
        return [s for s, names in sorted(self.seasonal.items()) if drifted.intersection(names)]

    def verdicts(self) -> dict[str, bool]:
        return {f.feature: f.drifted for f in self.tested}

    def frame(self) -> pd.DataFrame:
        """One row per feature, plus the day's drift_share and dataset_drift on every row."""
        frame = pd.DataFrame([asdict(f) for f in self.features], columns=[f.name for f in fields(FeatureDrift)])
        # Fixed types, so every day's file has the same schema even when a column is all NULL that day.
        floats = ["statistic", "p_value", "threshold", "psi", "reference_mean", "current_mean"]
        frame = frame.astype({**{c: "float64" for c in floats}, "current_count": "int64", "drifted": "bool"})
        frame["drift_share"] = self.share
        frame["dataset_drift"] = self.dataset_drift
        frame["seasonal_drifted"] = ",".join(self.seasonal_drifted)
        return frame


def strength(f: FeatureDrift) -> float:
    """How far past its threshold a feature is, one scale for PSI and p-values (>= 1 when drifted)."""
    if f.method in ("psi", "seasonal"):
        return f.statistic / f.threshold
    if f.method == "missing":
        return math.inf
    if f.p_value is None:
        return 0.0
    return math.inf if not f.p_value else math.log(f.p_value) / math.log(f.threshold)


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (scipy, two-sided, as Evidently calls it): (D, p)."""
    from scipy import stats  # imported by drift runs only: a second of every definitions load otherwise

    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def compare_feature(ref: FeatureReference, count: int, mean: float | None, histogram: dict | None,
                    spec: DriftSpec, ks_sample: np.ndarray | None, ks_current: np.ndarray | None,
                    psi_threshold: float | None = None) -> FeatureDrift:
    """One feature's verdict from the day's aggregates (and raw values where KS decides); `psi_threshold`
    instead of the spec's (a sensor's own, from the profile)."""
    numeric = ref.kind == "numeric"
    threshold = (psi_threshold or spec.psi_threshold) if numeric else spec.p_value
    common = {"feature": ref.name, "kind": ref.kind, "current_count": int(count), "reference_mean": ref.mean,
              "current_mean": mean if numeric else None}
    if ref.count == 0 or (numeric and not ref.edges):  # nothing (or no sampled value to bin by) in training
        return FeatureDrift(method="untested", statistic=None, p_value=None, threshold=threshold, drifted=False, **common)
    if count == 0:  # present in training, gone today
        return FeatureDrift(method="missing", statistic=None, p_value=None, threshold=threshold, drifted=True, **common)
    if not numeric:
        stat, p = chi_square(dict(zip(ref.categories, ref.counts)), {str(k): int(v) for k, v in (histogram or {}).items()})
        beyond_null = ref.null_threshold is None or stat > ref.null_threshold
        return FeatureDrift(method="chisquare", statistic=stat, p_value=p, threshold=threshold,
                            drifted=p < threshold and beyond_null, **common)
    value = psi(ref.counts, counts_by_bin(histogram, ref.edges))
    if ref.band and mean is not None:
        # A seasonal feature drifts when its level leaves what the reference held (values less the same slot's mean):
        # distance of the day's mean from the band's centre, in half-widths of the band; beyond 1 is drifted.
        middle, half = (ref.band[0] + ref.band[1]) / 2, max((ref.band[1] - ref.band[0]) / 2, 1e-12)
        level = abs(mean - middle) / half
        return FeatureDrift(method="seasonal", statistic=level, p_value=None, threshold=1.0, drifted=level > 1.0, psi=value,
                            **common)
    threshold = max(threshold, ref.null_threshold or 0.0)
    if ks_sample is not None and len(ks_sample) and ks_current is not None:
        d, p = ks(ks_sample, ks_current)
        return FeatureDrift(method="ks", statistic=d, p_value=p, threshold=spec.p_value, drifted=p <= spec.p_value,
                            psi=value, **common)
    return FeatureDrift(method="psi", statistic=value, p_value=None, threshold=threshold, drifted=value >= threshold,
                        psi=value, **common)


def ks_features(reference: ReferenceProfile, spec: DriftSpec) -> list[str]:
    """The profile's KS features, which must be numeric features of the reference."""
    unknown = [f for f in spec.ks_features if f not in reference.numeric]
    if unknown:
        raise DriftError(f"{reference.fleet}: drift.ks_features {unknown} are not numeric model features "
                         f"(numeric features: {', '.join(reference.numeric[:10])}, ...)")
    return list(spec.ks_features)


def compute_drift(con: duckdb.DuckDBPyConnection, relation: str, reference: ReferenceProfile,
                  sample: pd.DataFrame | None, spec: DriftSpec, what: str = "current data",
                  overrides: DriftOverrides | None = None) -> DriftResult:
    """Every feature of `relation` against the reference (seasonal features against the same slot of it): one
    aggregate pass, plus the raw KS columns. `overrides`: the profile's per-sensor exceptions."""
    overrides = overrides or DriftOverrides()
    features = [f for f in reference.features if f.name not in overrides.ignored]
    kinds = {f.name: f.kind for f in features}
    names = {name for name, *_ in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    absent = [f for f in kinds if f not in names]
    if absent:
        raise DriftError(f"{what}: feature column(s) of the reference profile missing: {', '.join(absent)}; "
                         f"the features changed since the training dataset was built, materialize it again")
    tested_by_ks = [f for f in ks_features(reference, spec) if f in kinds]
    if tested_by_ks and sample is None:
        raise DriftError(f"{what}: KS needs the raw reference sample")
    relation = deseasonalized(relation, reference.seasonal)
    row = list(con.execute(profile_sql(relation, kinds, {f.name: f.edges for f in features}, moments=False)).fetchone())
    rows = int(row.pop(0))
    if rows == 0:
        raise DriftError(f"{what}: no feature rows to compare with the reference")
    current = {}
    if tested_by_ks:
        columns = ", ".join(f"{value_sql(f, 'numeric')} AS v{i}" for i, f in enumerate(tested_by_ks))
        fetched = con.execute(f"SELECT {columns} FROM {relation}").fetchnumpy()
        current = {f: finite_values(fetched[f"v{i}"]) for i, f in enumerate(tested_by_ks)}
    signals = {sensor: [f for f in names if f in kinds] for sensor, names in seasonal_signals(reference.seasonal).items()}
    result = DriftResult(rows=rows, dataset_drift_share=spec.dataset_drift_share, seasonal=signals)
    for ref in features:
        if ref.kind == "numeric":
            count, mean, histogram = row.pop(0), row.pop(0), row.pop(0)
        else:
            count, histogram, mean = row.pop(0), row.pop(0), None
        ks_sample = finite_values(sample[ref.name].to_numpy()) if ref.name in current else None
        result.features.append(compare_feature(ref, count, mean, histogram, spec, ks_sample, current.get(ref.name),
                                               overrides.psi_threshold.get(ref.name)))
    return result


def day_relation(lake: Lake, fleet: str, day: date) -> str:
    """The day's feature partition as a SQL source; a clear error when it was not materialized."""
    source = lake.scan(fleet, "features", [day])
    if source is None:
        raise DriftError(f"{fleet}: no features for {day}; materialize {fleet}/features for {day} first")
    return source


def write_drift_report(con: duckdb.DuckDBPyConnection, lake: Lake, fleet: str, day: date, frame: pd.DataFrame) -> Path:
    """Write the day's per-feature drift table as `<fleet>/drift_report/date=<day>`, atomically."""
    con.register("drift_rows", frame)
    try:
        return lake.write_partition(con, fleet, TABLE, day, "SELECT * FROM drift_rows ORDER BY feature")
    finally:
        con.unregister("drift_rows")


def drift_history(lake: Lake, fleet: str) -> list[tuple[date, float, bool]]:
    """(day, drift_share, dataset_drift) of every written drift report, oldest first."""
    days = lake.partitions(fleet, TABLE)
    if not days:
        return []
    files = {str(lake.partition_file(fleet, TABLE, d)): d for d in days}
    listed = ", ".join(sql_str(f) for f in files)
    with connect() as con:
        rows = con.execute(f"SELECT filename, any_value(drift_share), bool_or(dataset_drift) FROM read_parquet([{listed}], "
                           "filename = true, hive_partitioning = false) GROUP BY filename").fetchall()
    return sorted((files[name], float(share), bool(drift)) for name, share, drift in rows)


def seasonal_drift_history(lake: Lake, fleet: str) -> dict[date, list[str]]:
    """Day -> the seasonal sensors its drift report found beyond the reference (days with none left out)."""
    days = lake.partitions(fleet, TABLE)
    files = {str(lake.partition_file(fleet, TABLE, d)): d for d in days}
    if not files:
        return {}
    listed = ", ".join(sql_str(f) for f in files)
    source = f"read_parquet([{listed}], filename = true, hive_partitioning = false, union_by_name = true)"
    with connect() as con:
        if "seasonal_drifted" not in {name for name, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}:
            return {}  # reports written before seasonal signals
        rows = con.execute(f"SELECT filename, any_value(seasonal_drifted) FROM {source} GROUP BY filename").fetchall()
    return {files[name]: value.split(",") for name, value in rows if value}
