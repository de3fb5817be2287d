"""Microsoft's reference recipe for Azure PdM: one multiclass GradientBoostingClassifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier

from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.training.evaluate import feature_columns
from iot_mlops.training.labels import label_column
from iot_mlops.training.metrics import component_metrics, macro_f1

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


def run_recipe(train: pd.DataFrame, test: pd.DataFrame, profile: FleetProfile) -> dict:
    """Fit the recipe on `train`, score per component on `test` like our model."""
    X_train = recipe_features(train, profile)
    X_test = recipe_features(test, profile).reindex(columns=X_train.columns, fill_value=0.0)
    model = GradientBoostingClassifier(random_state=42).fit(X_train, recipe_labels(train, profile))
    predicted = model.predict(X_test)
    proba = pd.DataFrame(model.predict_proba(X_test), columns=model.classes_, index=test.index)
    truth = pd.DataFrame({c: test[label_column(c)].astype(int) for c in profile.components})
    pred = pd.DataFrame({c: (predicted == c).astype(int) for c in profile.components}, index=test.index)
    prob = pd.DataFrame({c: proba[c] if c in proba else 0.0 for c in profile.components}, index=test.index)
    per_component = component_metrics(truth, pred, prob)
    return {"macro_f1": macro_f1(per_component), "per_class": per_component}
