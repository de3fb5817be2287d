"""Reference profile of a training dataset's train split: what each day's features are compared with.

Per numeric feature: bin edges, exact counts per bin, mean/std/min/max; per categorical feature:
category counts; plus a bounded raw sample (for KS and the Evidently report). Bin edges are
quantiles of the raw sample (10 bins by default); a feature with at most DISCRETE_VALUES distinct
sample values gets one bin per value instead, the rule Evidently's PSI uses. Counts are exact over
the whole train split.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from iot_mlops.lake import Lake, atomic_write, ident, parquet
from iot_mlops.lake.store import write_query
from iot_mlops.monitoring.calibration import calibrate
from iot_mlops.monitoring.seasonal import deseasonalized, seasonal_features, seasonal_means
from iot_mlops.monitoring.sensor_features import drift_overrides
from iot_mlops.profiles.monitoring import DriftSpec
from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.training.dataset import TABLE, DatasetReport, fingerprint
from iot_mlops.training.evaluate import feature_columns

PROFILE_FILE = "reference_profile.json"
SAMPLE_FILE = "reference_sample.parquet"
DISCRETE_VALUES = 20  # Evidently's PSI bins a numeric column by value when its reference has at most 20 values
KEY = ("device_id", "ts")
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
            "UHUGEINT", "FLOAT", "DOUBLE", "BOOLEAN")


class ReferenceProfileError(ValueError):
    """A reference profile that is missing, or cannot be built or read."""


@dataclass(frozen=True)
class FeatureReference:
    """One feature of the reference. Numeric bins: (-inf, e0], (e0, e1], ..., (e_last, inf)."""

    name: str
    kind: str  # numeric | categorical
    count: int  # finite (numeric) or non-null (categorical) values
    missing: int  # null or non-finite values
    binning: str = ""  # numeric: quantiles | values | empty (no finite value)
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # per bin (numeric) or per category
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    # The statistic (numeric: PSI, categorical: chi-square) a healthy day of the reference reaches against the
    # rest of it, at the calibration quantile; None when the reference was not calibrated (or too few days).
    null_threshold: float | None = None
    # Seasonal features: the 1% and 99% quantiles of the reference's values less their slot means (seasonal.py).
    band: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ReferenceProfile:
    fleet: str
    dataset_fingerprint: str
    rows: int
    bins: int
    features: list[FeatureReference]
    sample_rows: int
    sample_fingerprint: str = ""
    # Seasonal features: the reference's means by slot they are compared after removing (monitoring/seasonal.py).
    seasonal: dict[str, dict] = field(default_factory=dict)
    path: Path | None = None  # where it was read from or written to

    @property
    def sample_path(self) -> Path | None:
        return self.path.with_name(SAMPLE_FILE) if self.path else None

    @property
    def metadata(self) -> dict[str, object]:
        """Where the reference was written and how many features it profiles."""
        return {"reference_profile": self.path, "reference_features": len(self.features)}

    def feature(self, name: str) -> FeatureReference:
        return next(f for f in self.features if f.name == name)

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def to_json(self) -> str:
        raw = asdict(self)
        raw.pop("path")
        return json.dumps(raw, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> ReferenceProfile:
        raw = json.loads(text)
        raw["features"] = [FeatureReference(**f) for f in raw["features"]]
        return cls(**raw, path=path)


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def value_sql(name: str, kind: str) -> str:
    """A feature as compared: numeric as DOUBLE, categorical as VARCHAR."""
    return f"CAST({ident(name)} AS {'DOUBLE' if kind == 'numeric' else 'VARCHAR'})"


def classify(con: duckdb.DuckDBPyConnection, relation: str, features: list[str], categorical: list[str]) -> dict[str, str]:
    """Feature -> numeric or categorical: declared categoricals and non-numeric columns are categorical."""
    types = {name: dtype for name, dtype, *_ in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    missing = [f for f in features if f not in types]
    if missing:
        raise ReferenceProfileError(f"feature column(s) missing from the data: {', '.join(missing)}")
    numeric = lambda dtype: dtype.upper() in _NUMERIC or dtype.upper().startswith("DECIMAL")
    return {f: "numeric" if f not in categorical and numeric(types[f]) else "categorical" for f in features}


def sample_sql(relation: str, kinds: dict[str, str], rows: int, key: tuple[str, ...] = KEY) -> str:
    """A deterministic sample of `rows` rows: the rows with the smallest hash of their key (spread over time)."""
    columns = ", ".join(f"{value_sql(f, k)} AS {ident(f)}" for f, k in kinds.items())
    keys = ", ".join(ident(k) for k in key)
    return f"SELECT {columns} FROM {relation} ORDER BY hash({keys}), {keys} LIMIT {int(rows)}"


def finite_values(column: np.ndarray) -> np.ndarray:
    """The finite values of a fetched column (DuckDB masks NULLs)."""
    values = np.ma.getdata(column).astype(float)
    values = values[~np.ma.getmaskarray(column)]
    return values[np.isfinite(values)]


def bin_edges(values: np.ndarray, bins: int) -> tuple[str, list[float]]:
    """Binning and inner edges from a sample's finite values: one bin per value when few, else quantiles."""
    if len(values) == 0:
        return "empty", []
    distinct = np.unique(values)
    if len(distinct) <= DISCRETE_VALUES:
        # The first edge just below the smallest value gives it a bin of its own, so new values below it show.
        return "values", [float(np.nextafter(distinct[0], -np.inf)), *map(float, distinct)]
    return "quantiles", [float(e) for e in np.unique(np.quantile(values, np.arange(1, bins) / bins))]


def counts_by_bin(histogram: dict | None, edges: list[float]) -> list[int]:
    """DuckDB `histogram(x, edges)` (bucket upper bound -> count, inf for the overflow) as one count per bin."""
    histogram = histogram or {}
    return [int(histogram.get(e, 0)) for e in edges] + [int(histogram.get(math.inf, 0))]


def double_list(values: list[float]) -> str:
    """A DOUBLE[] literal holding exactly these doubles (parsed from their shortest round-trip repr)."""
    return "[" + ", ".join(f"CAST('{v!r}' AS DOUBLE)" for v in values) + "]"


def profile_sql(relation: str, kinds: dict[str, str], edges: dict[str, list[float]], moments: bool = True,
                block: str | None = None) -> str:
    """One aggregate pass: rows; per numeric feature count, mean[, std, min, max] and bin histogram of its
    finite values; per categorical feature count and histogram of its non-null values. With `block` (a SQL
    expression), one row per block value, which comes first."""
    # Non-finite values become NULL in a projection: aggregates skip NULLs, and the plan stays flat
    # (a FILTER clause per aggregate made DuckDB's planning grow with the square of the feature count).
    values, aggregates = [], ["count(*)"]
    for i, (name, kind) in enumerate(kinds.items()):
        col, v = value_sql(name, kind), f"v{i}"
        if kind == "numeric":
            values.append(f"CASE WHEN isfinite({col}) THEN {col} END AS {v}")
            stats = ["count", "avg", "stddev_samp", "min", "max"] if moments else ["count", "avg"]
            aggregates += [f"{s}({v})" for s in stats]
            aggregates.append(f"histogram({v}, {double_list(edges[name])})" if edges.get(name) else "NULL")
        else:
            values.append(f"{col} AS {v}")
            aggregates += [f"count({v})", f"histogram({v})"]
    if block is None:
        return f"SELECT {', '.join(aggregates)} FROM (SELECT {', '.join(values)} FROM {relation})"
    return (f"SELECT block, {', '.join(aggregates)} FROM (SELECT {block} AS block, {', '.join(values)} FROM {relation}) "
            "GROUP BY block ORDER BY block")


def build_reference(con: duckdb.DuckDBPyConnection, relation: str, kinds: dict[str, str], spec: DriftSpec,
                    sample_target: Path, fleet: str = "", dataset_fingerprint: str = "",
                    key: tuple[str, ...] = KEY, block: str | None = None) -> ReferenceProfile:
    """Write the raw sample of `relation` to `sample_target` (atomically), then profile every feature in one pass;
    with `block` (e.g. the day of `ts`), calibrate each feature's drift threshold on the reference's own blocks."""
    write_query(con, sample_sql(relation, kinds, spec.reference_sample, key), sample_target)
    sample = con.execute(f"SELECT * FROM {parquet(sample_target)}").fetchnumpy()
    binning = {f: bin_edges(finite_values(sample[f]), spec.bins) for f, k in kinds.items() if k == "numeric"}
    row = list(con.execute(profile_sql(relation, kinds, {f: b[1] for f, b in binning.items()})).fetchone())
    rows = int(row.pop(0))
    if rows == 0:
        raise ReferenceProfileError(f"{fleet or relation}: no reference rows to profile")
    features = []
    for name, kind in kinds.items():
        if kind == "numeric":
            count, mean, std, low, high, histogram = (row.pop(0) for _ in range(6))
            mode, edges = binning[name]
            counts = counts_by_bin(histogram, edges) if edges else [int(count)]
            features.append(FeatureReference(name, kind, int(count), rows - int(count), mode, edges, [], counts,
                                             _finite(mean), _finite(std), _finite(low), _finite(high)))
        else:
            count, histogram = row.pop(0), row.pop(0) or {}
            categories = sorted(histogram)
            features.append(FeatureReference(name, kind, int(count), rows - int(count), "", [], categories,
                                             [int(histogram[c]) for c in categories]))
    if block is not None and spec.calibrate:
        features = calibrate(features, blocks(con, relation, kinds, binning, block), spec.null_quantile)
    return ReferenceProfile(fleet=fleet, dataset_fingerprint=dataset_fingerprint, rows=rows, bins=spec.bins,
                            features=features, sample_rows=len(next(iter(sample.values()), [])),
                            sample_fingerprint=fingerprint(sample_target))


def blocks(con: duckdb.DuckDBPyConnection, relation: str, kinds: dict[str, str], binning: dict[str, tuple[str, list[float]]],
           block: str) -> dict[str, list]:
    """Per feature, each block's counts: per bin (numeric; None without edges) or per category."""
    found: dict[str, list] = {name: [] for name in kinds}
    for values in con.execute(profile_sql(relation, kinds, {f: b[1] for f, b in binning.items()}, False, block)).fetchall():
        row = list(values[2:])  # after the block and its row count
        for name, kind in kinds.items():
            if kind == "numeric":
                _count, _mean, histogram = row.pop(0), row.pop(0), row.pop(0)
                edges = binning[name][1]
                found[name].append(counts_by_bin(histogram, edges) if edges else None)
            else:
                _count, histogram = row.pop(0), row.pop(0)
                found[name].append({str(k): int(v) for k, v in (histogram or {}).items()})
    return found


def with_bands(reference: ReferenceProfile, sample_file: Path) -> ReferenceProfile:
    """Each seasonal feature with the band (1% and 99% quantiles of the raw sample) its level is judged against."""
    if not reference.seasonal:
        return reference
    sample = pd.read_parquet(sample_file, columns=list(reference.seasonal))
    features = []
    for feature in reference.features:
        values = sample[feature.name].to_numpy(dtype=float) if feature.name in reference.seasonal else np.array([])
        values = values[np.isfinite(values)]
        band = [float(q) for q in np.quantile(values, [0.01, 0.99])] if len(values) else []
        features.append(replace(feature, band=band))
    return replace(reference, features=features)


def profile_path(lake: Lake, fleet: str) -> Path:
    return lake.table_dir(fleet, TABLE) / PROFILE_FILE


def write_reference_profile(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile,
                            dataset: DatasetReport) -> ReferenceProfile:
    """Profile the train split of a just-built training dataset; written beside it, sample first, atomically."""
    relation = f"(SELECT * FROM {parquet(dataset.path)} WHERE split = 'train')"
    names = [name for name, *_ in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    features, categorical = feature_columns(pd.DataFrame(columns=names), profile)
    ignored = profile.monitoring.drift.ignore
    features = [f for f in features if not any(fnmatch(f, pattern) for pattern in ignored)]
    features = [f for f in features if f not in drift_overrides(profile, features).ignored]
    kinds = classify(con, relation, features, categorical)
    seasonal = seasonal_means(con, relation, seasonal_features(profile, kinds))
    target = profile_path(lake, profile.name)
    reference = build_reference(con, deseasonalized(relation, seasonal), kinds, profile.monitoring.drift,
                                target.with_name(SAMPLE_FILE), profile.name, dataset.fingerprint, block="CAST(ts AS DATE)")
    reference = with_bands(replace(reference, seasonal=seasonal), target.with_name(SAMPLE_FILE))
    atomic_write(target, lambda tmp: tmp.write_text(reference.to_json()))
    return replace(reference, path=target)


def load_reference_profile(lake: Lake, fleet: str) -> ReferenceProfile:
    """The reference profile of the fleet's current training dataset."""
    path = profile_path(lake, fleet)
    if not path.is_file():
        raise ReferenceProfileError(f"{fleet}: no reference profile yet; materialize {fleet}/training_dataset first")
    return ReferenceProfile.from_json(path.read_text(), path)


def load_reference_sample(reference: ReferenceProfile) -> pd.DataFrame:
    """The raw reference sample, checked against the profile that was written with it."""
    path = reference.sample_path
    if path is None or not path.is_file() or fingerprint(path) != reference.sample_fingerprint:
        raise ReferenceProfileError(f"{reference.fleet}: the reference sample {path} is missing or does not match its "
                                    f"profile; materialize {reference.fleet}/training_dataset again")
    return pd.read_parquet(path)
