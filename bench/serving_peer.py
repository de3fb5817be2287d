"""The prediction service a user would write: FastAPI over the MLflow champion and a dict of feature rows.

Started by bench/serving.py as `uvicorn serving_peer:app --app-dir bench --workers N`. At start-up it loads
`PEER_MODEL_URI` with mlflow.sklearn (MLFLOW_TRACKING_URI) and reads the online feature table (`PEER_FEATURES`,
Parquet) once into device -> one-row DataFrame. GET /predict/{device} answers the champion's per-component
probabilities (one predict_proba call, in FastAPI's thread pool as its docs advise for blocking work) and the alerts from each component's own fixed threshold: no store write,
no shadow challenger, no explanation, no API key, no reload when the champion or the features change.
"""

from __future__ import annotations

import os

import mlflow.sklearn
import pandas as pd
from fastapi import FastAPI, HTTPException

MODEL = mlflow.sklearn.load_model(os.environ["PEER_MODEL_URI"])
COMPONENTS = os.environ["PEER_COMPONENTS"].split(",")
THRESHOLDS = [float(e.threshold) for e in MODEL[-1].estimators_]
_features = pd.read_parquet(os.environ["PEER_FEATURES"])
ROWS = {str(d): _features.iloc[[i]][list(MODEL.feature_names_in_)] for i, d in enumerate(_features["device_id"])}
app = FastAPI()


@app.get("/predict/{device_id}")
def predict(device_id: str) -> dict:
    row = ROWS.get(device_id)
    if row is None:
        raise HTTPException(404, f"unknown device {device_id}")
    probabilities = [float(p[0, 1]) for p in MODEL.predict_proba(row)]
    return {"device_id": device_id, "probabilities": dict(zip(COMPONENTS, probabilities)),
            "alerts": [c for c, p, t in zip(COMPONENTS, probabilities, THRESHOLDS) if p >= t]}
