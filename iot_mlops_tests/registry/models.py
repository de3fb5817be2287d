"""Tiny real models standing in for the project's: OneHotEncoder + MultiOutputClassifier(HistGradientBoosting)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from threadpoolctl import threadpool_limits

from iot_mlops.registry.mlflow_service import ModelRegistry, ModelVersionInfo

FLEET = "water_heaters"
NAME = "component_failure"


@cache
def tiny_data(seed: int = 0, rows: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shared between tests: do not mutate."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"temp_mean_24h": rng.normal(60, 5, rows), "pressure_max_24h": rng.normal(3, 0.5, rows),
                      "model": rng.choice(["HX-100", "HX-200", "TX-9"], rows)})
    Y = pd.DataFrame({"heating_element": (X.temp_mean_24h > 62).astype(int),
                      "valve": ((X.pressure_max_24h > 3.4) | (X.model == "TX-9")).astype(int)})
    return X, Y


def _fit(*steps) -> Pipeline:
    X, Y = tiny_data()
    encode = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["model"])], remainder="passthrough")
    clf = MultiOutputClassifier(HistGradientBoostingClassifier(max_iter=10, random_state=0))
    with threadpool_limits(1):  # OpenMP threads thrash on a busy CI machine; the data is tiny anyway
        return Pipeline([*steps, ("encode", encode), ("clf", clf)]).fit(X, Y)


@cache
def tiny_model() -> Pipeline:
    return _fit()


def add_noise_column(frame: pd.DataFrame) -> pd.DataFrame:
    """A user function: a model holding it cannot be loaded without trusting arbitrary code."""
    return frame.assign(noise=0.0)


@cache
def untrusted_model() -> Pipeline:
    return _fit(("noise", FunctionTransformer(func=add_noise_column)))


def recall_figure() -> Figure:
    figure = Figure(figsize=(3, 2))
    figure.subplots().bar(["heating_element", "valve"], [0.8, 0.6])
    return figure


def log_version(registry: ModelRegistry, model: Pipeline, X: pd.DataFrame, macro_f1: float,
                recall: dict[str, float], *, figures: bool = False, name: str = NAME) -> ModelVersionInfo:
    """Register one version with the metrics the gate reads."""
    metrics = {"macro_f1": macro_f1, "pr_auc_valve": float("nan"), **{f"recall_{c}": r for c, r in recall.items()}}
    return registry.log_model_version(
        fleet=FLEET, model_name=name, model=model, X_example=X, params={"max_iter": 10, "horizon_hours": 24},
        metrics=metrics, tags={"data_window": "2026-01-01/2026-01-31", "dataset_fingerprint": "abc123",
                               "code_version": "test"},
        figures={"recall_by_component": recall_figure()} if figures else {},
        json_artifacts={"component_metrics": {c: {"recall": r} for c, r in recall.items()}},
        run_name=f"{name}-f1-{macro_f1}",
    )
