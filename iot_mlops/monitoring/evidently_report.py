"""Evidently 0.7 DataDriftPreset with our methods and thresholds: the HTML report and its per-column verdicts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from iot_mlops.lake import atomic_write
from iot_mlops.monitoring.drift import DriftError
from iot_mlops.monitoring.reference import ReferenceProfile, sample_sql
from iot_mlops.profiles.monitoring import DriftSpec

REPORT_FILE = "evidently.html"
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


@dataclass
class EvidentlyResult:
    snapshot: Any = field(repr=False)
    methods: dict[str, str]
    scores: dict[str, float]
    verdicts: dict[str, bool]  # Evidently's own: its ValueDrift test failed


def drift_preset(columns: list[str], spec: DriftSpec):
    """DataDriftPreset with the methods and thresholds of our fast path: PSI, chi-square, KS where listed."""
    from evidently.presets import DataDriftPreset

    ks = [c for c in spec.ks_features if c in columns]
    return DataDriftPreset(
        columns=columns, drift_share=spec.dataset_drift_share, num_method="psi", cat_method="chisquare",
        num_threshold=spec.psi_threshold, cat_threshold=spec.p_value,
        per_column_method={c: "ks" for c in ks} or None, per_column_threshold={c: spec.p_value for c in ks} or None,
    )


def comparable(reference: ReferenceProfile, sample: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """Features our fast path tests that have a value on both sides (Evidently refuses an empty column)."""
    def present(frame: pd.DataFrame, name: str, numeric: bool) -> bool:
        if numeric:
            return bool(np.isfinite(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)).any())
        return bool(frame[name].notna().any())

    return [f.name for f in reference.features if f.count and (f.kind == "categorical" or f.edges)
            and present(sample, f.name, f.kind == "numeric") and present(current, f.name, f.kind == "numeric")]


def binned(frame: pd.DataFrame, reference: ReferenceProfile, spec: DriftSpec) -> pd.DataFrame:
    """The features PSI decides replaced by their reference bin number (non-finite values by NaN).

    Evidently's PSI bins a column with at most 20 distinct values by value; given bin numbers it
    computes PSI on exactly our bins, where on raw values it would use Sturges bins over both sides.
    """
    out = frame.copy()
    for f in reference.features:
        if f.kind == "numeric" and f.edges and f.name not in spec.ks_features:
            values = pd.to_numeric(frame[f.name], errors="coerce").to_numpy(dtype=float)
            index = np.searchsorted(np.asarray(f.edges), values, side="left").astype(float)  # bins (e[i-1], e[i]]
            index[~np.isfinite(values)] = np.nan
            out[f.name] = index
    return out


def run_evidently(current: pd.DataFrame, sample: pd.DataFrame, reference: ReferenceProfile, spec: DriftSpec,
                  same_bins: bool = False) -> EvidentlyResult:
    """Evidently's drift verdicts of `current` against the raw reference sample (current first, as Report.run wants).

    same_bins: give Evidently bin numbers instead of raw values for the PSI features (see `binned`).
    """
    from evidently import DataDefinition, Dataset, Report

    if same_bins:
        current, sample = binned(current, reference, spec), binned(sample, reference, spec)
    columns = comparable(reference, sample, current)
    if not columns:
        raise DriftError(f"{reference.fleet}: no feature has values in both the reference sample and the current data")
    kinds = {f.name: f.kind for f in reference.features}
    definition = DataDefinition(numerical_columns=[c for c in columns if kinds[c] == "numeric"],
                                categorical_columns=[c for c in columns if kinds[c] == "categorical"])
    report = Report([drift_preset(columns, spec)], include_tests=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's divide-by-zero on a new category (p = 0 is right)
        snapshot = report.run(Dataset.from_pandas(current[columns], data_definition=definition),
                              Dataset.from_pandas(sample[columns], data_definition=definition))
    return parse_snapshot(snapshot)


def parse_snapshot(snapshot) -> EvidentlyResult:
    """Per column: method, drift score and verdict (the ValueDrift test's status) of a DataDriftPreset run."""
    raw = snapshot.dict()
    result = EvidentlyResult(snapshot=snapshot, methods={}, scores={}, verdicts={})
    column_of = {}
    for metric in raw["metrics"]:
        config = metric["config"]
        if config.get("type") == VALUE_DRIFT:
            column_of[metric["id"]] = config["column"]
            result.methods[config["column"]] = config["method"]
            result.scores[config["column"]] = float(metric["value"])
    for test in raw["tests"]:
        column = column_of.get(test["metric_config"]["metric_id"])
        if column is not None:
            result.verdicts[column] = str(getattr(test["status"], "value", test["status"])) == "FAIL"
    return result


def day_sample(con: duckdb.DuckDBPyConnection, relation: str, reference: ReferenceProfile, rows: int) -> pd.DataFrame:
    """A bounded, deterministic sample of the day, with the reference's columns and types."""
    return con.execute(sample_sql(relation, {f.name: f.kind for f in reference.features}, rows)).df()


def save_report(result: EvidentlyResult, target: Path) -> Path:
    """Write the Evidently HTML report atomically."""
    return atomic_write(target, lambda tmp: result.snapshot.save_html(str(tmp)))
