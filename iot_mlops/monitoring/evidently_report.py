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
from iot_mlops.monitoring.drift import DriftError, DriftResult, strength
from iot_mlops.monitoring.reference import ReferenceProfile, sample_sql
from iot_mlops.monitoring.seasonal import deseasonalized
from iot_mlops.profiles.monitoring import DriftSpec

REPORT_FILE = "evidently.html"
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"


@dataclass
class EvidentlyResult:
    snapshot: Any = field(repr=False)
    methods: dict[str, str]
    scores: dict[str, float]
    verdicts: dict[str, bool]  # Evidently's own: its ValueDrift test failed
    drifted_count: int = 0  # Evidently's dataset verdict: its DriftedColumnsCount metric
    share: float = 0.0
    tested: int = 0


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
        if config.get("type") == DRIFTED_COUNT:
            result.drifted_count, result.share = int(metric["value"]["count"]), float(metric["value"]["share"])
            result.tested = len(config["columns"])
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
    """A bounded, deterministic sample of the day, with the reference's columns and types (seasonal features as
    the reference sample holds them: less the reference's mean for the same slot)."""
    relation = deseasonalized(relation, reference.seasonal)
    return con.execute(sample_sql(relation, {f.name: f.kind for f in reference.features}, rows)).df()


def shown_columns(ours: DriftResult, theirs: EvidentlyResult, top: int, limit: int) -> list[str]:
    """Columns the HTML details: drifted by either test (strongest first by ours), then our top-`top` by PSI."""
    compared = [f for f in ours.tested if f.feature in theirs.verdicts]
    drifted = sorted((f for f in compared if f.drifted or theirs.verdicts[f.feature]), key=strength, reverse=True)
    shown = {f.feature for f in drifted}
    calm = sorted((f for f in compared if f.feature not in shown and f.psi is not None), key=lambda f: f.psi, reverse=True)
    return [f.feature for f in drifted[:limit]] + [f.feature for f in calm[:top]]


def _only_columns(widget, keep: set[str]):
    """The widget with only the rows (and their detail plots) of the kept columns, where it is a per-column table."""
    rows = (widget.params or {}).get("data")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict) and "column_name" in rows[0]:
        rows = [r for r in rows if r["column_name"] in keep]
        ids = {part["id"] for r in rows for part in (r.get("details") or {}).get("parts", [])}
        widget = widget.copy(update={"params": {**widget.params, "data": rows},
                                     "additionalGraphs": [g for g in widget.additionalGraphs if g.id in ids]})
    if widget.widgets:
        widget = widget.copy(update={"widgets": [_only_columns(w, keep) for w in widget.widgets]})
    return widget


def report_html(result: EvidentlyResult, columns: list[str]) -> str:
    """The report's HTML with per-column plots of `columns` only; its counters and tests still cover every column."""
    # Each column's plots cost ~70 kB: 110 columns made an 11 MB page. The 3.5 MB JS bundle (plotly
    # inside) stays embedded: loaded from a local file the page would not render in MLflow's
    # artifact viewer, and from a CDN not offline.
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget

    snapshot = result.snapshot
    # Snapshot.get_html_str renders every widget; the same call on filtered copies of them (Evidently 0.7).
    widgets = [_only_columns(w, set(columns)) for w in snapshot._widgets]
    return render_widgets([group_widget(title="", widgets=widgets), *snapshot._tests_widgets])


def save_report(result: EvidentlyResult, target: Path, columns: list[str]) -> Path:
    """Write the bounded Evidently HTML report atomically."""
    return atomic_write(target, lambda tmp: tmp.write_text(report_html(result, columns), encoding="utf-8"))
