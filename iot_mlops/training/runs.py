"""Record a trained model: metrics, plots, tags and the model itself, as a registered MLflow version."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from iot_mlops.names import model_name
from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.registry.mlflow_service import ModelRegistry, ModelVersionInfo
from iot_mlops.training.dataset import DatasetReport
from iot_mlops.training.evaluate import targets

if TYPE_CHECKING:  # scikit-learn and matplotlib are imported where models are trained and plotted, not at load
    from iot_mlops.training.anomaly import AnomalyResult
    from iot_mlops.training.train import TrainingResult


@cache
def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    try:
        package = version("iot_mlops")
    except PackageNotFoundError:
        package = "unknown"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return package
    return f"{package}+{commit}"


def feature_importance(result: TrainingResult, frame: pd.DataFrame, profile: FleetProfile, rows: int = 2000) -> pd.Series:
    """Permutation importance (drop in macro F1) on a sample of the test rows."""
    test = frame[frame["split"] == "test"]
    sample = test.sample(min(rows, len(test)), random_state=0) if len(test) else test
    if sample.empty:
        return pd.Series(dtype=float)
    from sklearn.inspection import permutation_importance

    from iot_mlops.training.model import macro_fbeta

    scorer = lambda model, X, Y: macro_fbeta(np.asarray(Y), model.predict(X), 1.0)  # noqa: E731
    found = permutation_importance(result.model, sample[result.features], targets(sample, profile).to_numpy(),
                                   scoring=scorer, n_repeats=3, random_state=0)
    return pd.Series(found.importances_mean, index=result.features).sort_values(ascending=False)


@dataclass
class LoggedModel:
    version: ModelVersionInfo
    figures: dict
    metrics: dict[str, float]


def dataset_tags(dataset: DatasetReport) -> dict[str, str]:
    b = dataset.boundaries
    return {
        "dataset_fingerprint": dataset.fingerprint,
        "data_window": f"{dataset.window[0]:%Y-%m-%dT%H:%M}..{dataset.window[1]:%Y-%m-%dT%H:%M}",
        "split": b.name,
        "test_start": f"{b.test_start:%Y-%m-%dT%H:%M}",
        "code_version": code_version(),
    }


def log_failure_model(registry: ModelRegistry, profile: FleetProfile, result: TrainingResult, frame: pd.DataFrame,
                      dataset: DatasetReport, algorithm: str, trigger: str) -> LoggedModel:
    """Log the failure model's run and register it as a new `challenger` version."""
    from iot_mlops.training.plots import confusion_figure, curves_figure, importance_figure

    importance = feature_importance(result, frame, profile)
    figures = {
        "confusion_matrix.png": confusion_figure(result.test.predictions, profile.components),
        "precision_recall.png": curves_figure(result.test.predictions, profile.components, "pr"),
        "roc.png": curves_figure(result.test.predictions, profile.components, "roc"),
        "feature_importance.png": importance_figure(importance),
    }
    metrics = result.test.flat("test_")
    metrics["search_best_score"] = result.search.score
    for comp, figures_of in result.search.validation.items():  # the thresholds' figures on validation
        metrics.update({f"validation_{comp}_{k}": float(v) for k, v in figures_of.items()})
    params = {"algorithm": algorithm, **result.params, **{f"threshold_{c}": round(t, 6) for c, t in result.thresholds.items()},
              **{f"rows_{k}": v for k, v in result.rows.items()}, "features": len(result.features),
              "horizon_h": profile.target.horizon.total_seconds() / 3600}
    info = registry.log_model_version(
        fleet=profile.name, model_name=model_name(profile.name, profile.target.prediction_type), model=result.model,
        X_example=frame[result.features].head(20), params=params, metrics=metrics,
        tags={**dataset_tags(dataset), "prediction_type": profile.target.prediction_type, "trigger": trigger},
        figures=figures,
        json_artifacts={"thresholds.json": result.thresholds, "search.json": {"tried": result.search.tried, "validation": result.search.validation},
                        "feature_importance.json": importance.round(6).to_dict(), "features.json": {"features": result.features}},
        run_name=f"{profile.name}-{profile.target.prediction_type}",
    )
    return LoggedModel(info, figures, metrics)


def log_anomaly_model(registry: ModelRegistry, profile: FleetProfile, result: AnomalyResult, frame: pd.DataFrame,
                      dataset: DatasetReport, trigger: str) -> LoggedModel:
    """Log the anomaly model's run and register it as a new `challenger` version."""
    metrics = {f"test_{k}": v for k, v in result.metrics.items()}
    info = registry.log_model_version(
        fleet=profile.name, model_name=model_name(profile.name, "anomaly"), model=result.model,
        X_example=frame[result.features].head(20), params={"algorithm": "isolation_forest", "healthy_rows": result.healthy_rows,
                                                           "healthy_margin_h": profile.training.healthy_margin.total_seconds() / 3600},
        metrics=metrics, tags={**dataset_tags(dataset), "prediction_type": "anomaly", "trigger": trigger},
        figures={}, json_artifacts={"features.json": {"features": result.features}}, run_name=f"{profile.name}-anomaly",
    )
    return LoggedModel(info, {}, metrics)
