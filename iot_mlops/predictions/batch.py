"""Batch scoring: the champion's failure probabilities and the anomaly score for feature rows."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

NAMESPACE = uuid.UUID("6f1c2a52-8d7e-4c1b-9a43-3e0f7b1d2c55")


def model_inputs(model) -> list[str]:
    """The feature columns a fitted pipeline was trained on."""
    return list(model.feature_names_in_)


def prediction_ids(fleet: str, frame: pd.DataFrame, model_name: str, version: str) -> list[str]:
    """Stable ids: the same row scored by the same model version gets the same id."""
    return [str(uuid.uuid5(NAMESPACE, f"{fleet}/{d}/{t.isoformat()}/{model_name}/{version}"))
            for d, t in zip(frame["device_id"], pd.to_datetime(frame["ts"]))]


def score(fleet: str, features: pd.DataFrame, components: list[str], failure_model, name: str, version: str,
          anomaly_model=None, anomaly_version: str | None = None) -> pd.DataFrame:
    """One prediction row per feature row, keeping model name and version."""
    # Scoring code imports scikit-learn: here, inside the run that scores, not at every definitions load.
    from iot_mlops.training.anomaly import anomaly_scores
    from iot_mlops.training.model import probabilities

    if features.empty:  # a day without feature rows: no predictions, but the partition keeps its schema
        return _empty(features, components)
    X = features[model_inputs(failure_model)]
    prob = probabilities(failure_model, X, components)
    flags = pd.DataFrame(failure_model.predict(X), columns=components, index=features.index).astype(int)
    strongest = prob.where(flags == 1, -1.0).idxmax(axis=1)
    predicted = np.where(flags.to_numpy().any(axis=1), strongest, "none")
    out = pd.DataFrame({
        "prediction_id": prediction_ids(fleet, features, name, version),
        "device_id": features["device_id"].to_numpy(),
        "ts": features["ts"].to_numpy(),
        "model_name": name,
        "model_version": str(version),
    }, index=features.index)
    for comp in components:
        out[f"p_{comp}"] = prob[comp].round(6)
        out[f"alert_{comp}"] = flags[comp]
    out["predicted_component"] = predicted
    if anomaly_model is not None:
        out["anomaly_score"] = np.round(anomaly_scores(anomaly_model, features[model_inputs(anomaly_model)]), 6)
        out["anomaly_model_version"] = anomaly_version
    else:
        out["anomaly_score"] = np.nan
        out["anomaly_model_version"] = None
    return out.reset_index(drop=True)


def _empty(features: pd.DataFrame, components: list[str]) -> pd.DataFrame:
    columns = {"prediction_id": object, "device_id": features["device_id"].dtype, "ts": features["ts"].dtype,
               "model_name": object, "model_version": object}
    for comp in components:
        columns.update({f"p_{comp}": float, f"alert_{comp}": "int64"})
    columns.update({"predicted_component": object, "anomaly_score": float, "anomaly_model_version": object})
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
