"""Drift of one day of features against the training reference: the fast path's table and Evidently's report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from iot_mlops.lake import Lake
from iot_mlops.monitoring.drift import TABLE, DriftResult, compute_drift, day_relation, strength, write_drift_report
from iot_mlops.monitoring.evidently_report import (
    REPORT_FILE,
    EvidentlyResult,
    day_sample,
    run_evidently,
    save_report,
    shown_columns,
)
from iot_mlops.monitoring.reference import ReferenceProfile
from iot_mlops.monitoring.sensor_features import drift_overrides
from iot_mlops.monitoring.verdicts import VerdictComparison, compare_verdicts, explanation
from iot_mlops.profiles import FleetProfile
from iot_mlops.registry.mlflow_service import ModelRegistry, run_page_url

TOP = 10  # drifted features listed in the materialization metadata


@dataclass
class DayReport:
    day: date
    result: DriftResult
    table: pd.DataFrame
    path: Path
    evidently: EvidentlyResult | None = None
    verdicts: VerdictComparison | None = None
    explanation: str = ""
    html: str | None = None  # the MLflow artifact's URI
    url: str | None = None
    reference_dataset: str = ""

    @property
    def metadata(self) -> dict[str, object]:
        """The day's verdict and counts (and Evidently's, when it ran), as plain values."""
        result = self.result
        metadata: dict[str, object] = {
            "drift_share": float(result.share),
            "drifted_features": len(result.drifted),
            "tested_features": len(result.tested),
            "dataset_drift": bool(result.dataset_drift),
            "seasonal_drifted": ", ".join(result.seasonal_drifted) or "-",
            "rows": result.rows,
            "dagster/row_count": len(self.table),
            "path": self.path,
            "reference_dataset": self.reference_dataset,
        }
        if self.url and self.html and self.verdicts:
            metadata["evidently_agreement"] = float(agreement(self.table))
            metadata["evidently_drift_share"] = float(self.verdicts.evidently_share)
            metadata["evidently_drifted_features"] = self.verdicts.evidently_drifted
            metadata["evidently_tested_features"] = self.verdicts.evidently_tested
        return metadata

    @property
    def markdown(self) -> dict[str, str]:
        """The most drifted features, and where Evidently's verdicts differ from ours with why."""
        markdown = {"top_drifted": top_drifted(self.result)}
        if self.url and self.html and self.verdicts:
            markdown["verdicts_disagree"] = self.verdicts.disagree_markdown()
            markdown["drift_explanation"] = self.explanation
        return markdown


def experiment_name(fleet: str) -> str:
    return f"{fleet}_drift"


def report_day(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, day: date, reference: ReferenceProfile,
               sample: pd.DataFrame, registry: ModelRegistry | None = None, ui_url: str = "") -> DayReport:
    """Drift of one day: the fast path's table, and (with a registry) Evidently's report logged to MLflow."""
    fleet, spec = profile.name, profile.monitoring.drift
    relation = day_relation(lake, fleet, day)
    overrides = drift_overrides(profile, [f.name for f in reference.features])
    result = compute_drift(con, relation, reference, sample, spec, what=f"{fleet}/features {day}", overrides=overrides)
    table = result.frame()
    table["evidently_method"] = pd.Series(pd.NA, index=table.index, dtype="string")
    table["evidently_score"] = pd.Series(float("nan"), index=table.index, dtype="float64")
    table["evidently_drifted"] = pd.Series(pd.NA, index=table.index, dtype="boolean")
    report = DayReport(day=day, result=result, table=table, path=lake.partition_file(fleet, TABLE, day),
                       reference_dataset=reference.dataset_fingerprint)
    if registry is not None:
        evidently = run_evidently(day_sample(con, relation, reference, spec.evidently_rows), sample, reference, spec)
        table["evidently_method"] = table["feature"].map(evidently.methods).astype("string")
        table["evidently_score"] = table["feature"].map(evidently.scores).astype("float64")
        table["evidently_drifted"] = table["feature"].map(evidently.verdicts).astype("boolean")
        report.evidently, report.verdicts = evidently, compare_verdicts(result, evidently)
        report.explanation = explanation(report.verdicts, result, evidently, reference, spec, spec.evidently_rows)
        columns = shown_columns(result, evidently, spec.evidently_top, spec.evidently_max_columns)
        # One copy, in MLflow: its Artifacts tab renders the page the metadata links to, and the
        # lake stays Parquet (the page beside each partition doubled a day's 11 MB).
        with tempfile.TemporaryDirectory() as folder:
            html = save_report(evidently, Path(folder) / REPORT_FILE, columns)
            experiment_id, run_id = registry.log_report(
                experiment_name(fleet), f"drift_report {day}", html, artifact_dir="evidently",
                metrics={"drift_share": result.share, "drifted_features": len(result.drifted),
                         "dataset_drift": float(result.dataset_drift), "evidently_agreement": agreement(table),
                         "evidently_drift_share": evidently.share, "evidently_drifted_features": evidently.drifted_count},
                tags={"fleet": fleet, "day": day.isoformat(), "reference_dataset": reference.dataset_fingerprint},
            )
        report.html = f"{registry.client.get_run(run_id).info.artifact_uri}/evidently/{REPORT_FILE}"
        report.url = run_page_url(ui_url, experiment_id, run_id, f"evidently/{REPORT_FILE}")
    write_drift_report(con, lake, fleet, day, table)
    # Reports used to sit beside the partition; a stale one would describe other data.
    report.path.with_name(REPORT_FILE).unlink(missing_ok=True)
    return report


def agreement(table: pd.DataFrame) -> float:
    """Share of the features Evidently compared on which its verdict equals ours (NaN when it compared none)."""
    compared = table[table["evidently_drifted"].notna()]
    if compared.empty:
        return float("nan")
    return float((compared["evidently_drifted"].astype(bool) == compared["drifted"]).mean())


def top_drifted(result: DriftResult, limit: int = TOP) -> str:
    """Markdown table of the most drifted features (PSI over its threshold, or the smallest p-values)."""
    drifted = sorted((f for f in result.tested if f.drifted), key=strength, reverse=True)[:limit]
    if not drifted:
        return "No feature drifted."
    fmt = lambda v: "-" if v is None else f"{v:.4g}"
    lines = ["| feature | method | statistic | p-value | threshold |", "|---|---|---|---|---|"]
    lines += [f"| {f.feature} | {f.method} | {fmt(f.statistic)} | {fmt(f.p_value)} | {f.threshold:g} |" for f in drifted]
    return "\n".join(lines)
