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
from iot_mlops.monitoring.stattests import chi_square, psi
from iot_mlops.monitoring.reference import (
    FeatureReference,
    ReferenceProfile,
    counts_by_bin,
    finite_values,
    profile_sql,
    value_sql,
)
from iot_mlops.profiles.monitoring import DriftSpec

TABLE = "drift_report"


class DriftError(ValueError):
    """Drift cannot be computed: no data for the day, or a profile that does not fit it."""


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    method: str  # psi | chisquare | ks | untested (no reference values) | missing (no values today)
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

    @property
    def tested(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.method != "untested"]

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.tested if f.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted) / len(self.tested) if self.tested else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.tested) and self.share >= self.dataset_drift_share

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
        return frame


def strength(f: FeatureDrift) -> float:
    """How far past its threshold a feature is, one scale for PSI and p-values (>= 1 when drifted)."""
    if f.method == "psi":
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
                    spec: DriftSpec, ks_sample: np.ndarray | None, ks_current: np.ndarray | None) -> FeatureDrift:
    """One feature's verdict from the day's aggregates (and raw values where KS decides)."""
    numeric = ref.kind == "numeric"
    threshold = spec.psi_threshold if numeric else spec.p_value
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
                  sample: pd.DataFrame | None, spec: DriftSpec, what: str = "current data") -> DriftResult:
    """Every feature of `relation` against the reference: one aggregate pass, plus the raw KS columns."""
    kinds = {f.name: f.kind for f in reference.features}
    names = {name for name, *_ in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    absent = [f for f in kinds if f not in names]
    if absent:
        raise DriftError(f"{what}: feature column(s) of the reference profile missing: {', '.join(absent)}; "
                         f"the features changed since the training dataset was built, materialize it again")
    tested_by_ks = ks_features(reference, spec)
    if tested_by_ks and sample is None:
        raise DriftError(f"{what}: KS needs the raw reference sample")
    row = list(con.execute(profile_sql(relation, kinds, {f.name: f.edges for f in reference.features}, moments=False)).fetchone())
    rows = int(row.pop(0))
    if rows == 0:
        raise DriftError(f"{what}: no feature rows to compare with the reference")
    current = {}
    if tested_by_ks:
        columns = ", ".join(f"{value_sql(f, 'numeric')} AS v{i}" for i, f in enumerate(tested_by_ks))
        fetched = con.execute(f"SELECT {columns} FROM {relation}").fetchnumpy()
        current = {f: finite_values(fetched[f"v{i}"]) for i, f in enumerate(tested_by_ks)}
    result = DriftResult(rows=rows, dataset_drift_share=spec.dataset_drift_share)
    for ref in reference.features:
        if ref.kind == "numeric":
            count, mean, histogram = row.pop(0), row.pop(0), row.pop(0)
        else:
            count, histogram, mean = row.pop(0), row.pop(0), None
        ks_sample = finite_values(sample[ref.name].to_numpy()) if ref.name in current else None
        result.features.append(compare_feature(ref, count, mean, histogram, spec, ks_sample, current.get(ref.name)))
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
