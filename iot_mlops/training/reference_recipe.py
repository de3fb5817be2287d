"""The sides `iot-mlops evaluate` compares ours with: Microsoft's reference recipe for Azure PdM (one multiclass
GradientBoostingClassifier on our features) and a plain baseline (HistGradientBoosting on the raw sensors and
their window means), each scored per component and per failure event like our model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.training.evaluate import feature_columns
from iot_mlops.training.labels import label_column
from iot_mlops.training.metrics import component_metrics, event_metrics, macro_f1

NONE = "none"


def recipe_features(frame: pd.DataFrame, profile: FleetProfile) -> pd.DataFrame:
    """The recipe's inputs: our features minus what the recipe does not have, model one-hot encoded."""
    features, categorical = feature_columns(frame, profile)
    kept = [c for c in features if not c.startswith("hours_since_error_")]
    return pd.get_dummies(frame[kept], columns=categorical, dtype=float).fillna(0.0)


def recipe_labels(frame: pd.DataFrame, profile: FleetProfile) -> np.ndarray:
    """One label per row: the failing component (the first listed when several fail), else 'none'."""
    labels = np.full(len(frame), NONE, dtype=object)
    for comp in reversed(profile.components):
        labels[frame[label_column(comp)].to_numpy() == 1] = comp
    return labels


def baseline_features(frame: pd.DataFrame, profile: FleetProfile) -> pd.DataFrame:
    """The baseline's inputs: each sensor's latest reading and its rolling means, nothing engineered."""
    sensors = profile.sensor_names
    kept = [c for c in frame.columns if c in sensors or any(c.startswith(f"{s}_mean_") for s in sensors)]
    return frame[kept].astype(float)


def run_recipe(train: pd.DataFrame, test: pd.DataFrame, profile: FleetProfile, failures: pd.DataFrame | None = None) -> dict:
    """Fit the recipe on `train`, score per component on `test` like our model."""
    X_train = recipe_features(train, profile)
    X_test = recipe_features(test, profile).reindex(columns=X_train.columns, fill_value=0.0)
    model = GradientBoostingClassifier(random_state=42).fit(X_train, recipe_labels(train, profile))
    return score(model, X_test, test, profile, failures)


def run_baseline(train: pd.DataFrame, test: pd.DataFrame, profile: FleetProfile, failures: pd.DataFrame | None = None) -> dict:
    """Fit HistGradientBoosting (sklearn's defaults) on the raw sensors and their means; score it like our model."""
    X_train = baseline_features(train, profile)
    model = HistGradientBoostingClassifier(random_state=42).fit(X_train, recipe_labels(train, profile))
    return score(model, baseline_features(test, profile)[list(X_train.columns)], test, profile, failures)


def score(model, X_test: pd.DataFrame, test: pd.DataFrame, profile: FleetProfile, failures: pd.DataFrame | None) -> dict:
    """Per-component metrics of a multiclass model's predictions, and event metrics when failures are given."""
    predicted = model.predict(X_test)
    proba = pd.DataFrame(model.predict_proba(X_test), columns=model.classes_, index=test.index)
    truth = pd.DataFrame({c: test[label_column(c)].astype(int) for c in profile.components})
    pred = pd.DataFrame({c: (predicted == c).astype(int) for c in profile.components}, index=test.index)
    prob = pd.DataFrame({c: proba[c] if c in proba else 0.0 for c in profile.components}, index=test.index)
    per_component = component_metrics(truth, pred, prob)
    result = {"macro_f1": macro_f1(per_component), "per_class": per_component}
    if failures is not None:
        scored = pd.concat([test[["device_id", "ts"]], pred], axis=1)
        result["events"] = event_metrics(failures, scored, profile.target.horizon, profile.features.step)
    return result
