"""Train a fleet's failure or anomaly model on the stored training dataset, log it and register it as challenger."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from iot_mlops.lake import Lake
from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.registry.mlflow_service import ModelRegistry, artifact_file_url, run_page_url
from iot_mlops.training.dataset import load_dataset_report
from iot_mlops.training.runs import log_anomaly_model, log_failure_model


@dataclass
class ModelRun:
    """One trained and registered model: plain metadata, and the entries written in Markdown."""

    metadata: dict[str, object]
    markdown: dict[str, str] = field(default_factory=dict)


def fit_failure_model(lake: Lake, registry: ModelRegistry, profile: FleetProfile, failures: pd.DataFrame, *,
                      algorithm: str | None, search_iterations: int, search_folds: int, threshold_beta: float,
                      trigger: str, ui_url: str) -> ModelRun:
    """Train the failure model (the profile's algorithm unless given), log it with its figures and register it."""
    # Training code pulls in scikit-learn and matplotlib: imported by the run, not by every definitions load.
    from iot_mlops.training.metrics import per_component_markdown
    from iot_mlops.training.model import ModelConfig
    from iot_mlops.training.plots import PLOT_TITLES, plot_markdown
    from iot_mlops.training.train import train_failure_model

    dataset = load_dataset_report(lake, profile.name)
    frame = pd.read_parquet(dataset.path)
    algorithm = algorithm or profile.training.algorithm
    model_config = ModelConfig(algorithm=algorithm, scaling=profile.training.scaling, search_iterations=search_iterations,
                               search_folds=search_folds, threshold_beta=threshold_beta)
    result = train_failure_model(frame, profile, failures, model_config)
    logged = log_failure_model(registry, profile, result, frame, dataset, algorithm, trigger)
    metadata = {
        "model": logged.version.name, "version": logged.version.version, "mlflow_run_id": logged.version.run_id,
        "test_macro_f1": result.test.macro_f1, "test_event_recall": result.test.events["event_recall"],
        "params": {k: str(v) for k, v in result.params.items()},
        "thresholds": result.thresholds, "dataset_fingerprint": dataset.fingerprint,
    }
    if result.search.validation:  # what each threshold caught and cost on validation, within the alarm budget
        metadata["max_false_alarms_per_device_month"] = profile.training.max_false_alarms_per_device_month
        metadata["thresholds_on_validation"] = result.search.validation
    markdown = {"per_component": per_component_markdown(result.test.per_component, result.test.component_events)}
    version = logged.version
    for name in logged.figures:  # shown inline on the asset page, served by `mlflow ui` (see plot_markdown)
        page = run_page_url(ui_url, version.experiment_id, version.run_id, name)
        markdown[name.removesuffix(".png")] = plot_markdown(PLOT_TITLES.get(name, name), artifact_file_url(ui_url, version.run_id, name), page)
    return ModelRun(metadata, markdown)


def fit_anomaly_model(lake: Lake, registry: ModelRegistry, profile: FleetProfile, failures: pd.DataFrame, *,
                      trigger: str) -> ModelRun:
    """Train the anomaly model on healthy windows, log it and register it."""
    from iot_mlops.training.anomaly import train_anomaly_model  # scikit-learn: loaded by the run only

    dataset = load_dataset_report(lake, profile.name)
    frame = pd.read_parquet(dataset.path)
    result = train_anomaly_model(frame, profile, failures)
    logged = log_anomaly_model(registry, profile, result, frame, dataset, trigger)
    return ModelRun({
        "model": logged.version.name, "version": logged.version.version, "mlflow_run_id": logged.version.run_id,
        "healthy_rows": result.healthy_rows, **{k: v for k, v in logged.metrics.items() if not math.isnan(v)},
    })
