"""Writers of the operational store for the tests' writer processes: a module light enough to import in each."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from iot_mlops.opstore.engine import create_engine
from iot_mlops.opstore.feedback import FeedbackStore
from iot_mlops.opstore.predictions import PredictionLog

T0 = datetime(2026, 1, 1)


def prediction_frame(n: int, start: int = 0, alert_every: int = 3, devices: int = 7) -> pd.DataFrame:
    """Rows shaped like the predictions partition: every `alert_every`-th row alerts for heating_element."""
    i = np.arange(start, start + n)
    rng = np.random.default_rng(start)
    alert = (i % alert_every == 0).astype(int)
    return pd.DataFrame({
        "prediction_id": [f"p{k}" for k in i], "device_id": [f"d{k % devices}" for k in i],
        "ts": pd.to_datetime(T0) + pd.to_timedelta(i, unit="h"), "model_name": "wh_component_failure", "model_version": "3",
        "p_heating_element": rng.random(n).round(6), "alert_heating_element": alert,
        "p_valve": rng.random(n).round(6), "alert_valve": 0,
        "predicted_component": np.where(alert == 1, "heating_element", "none"),
        "anomaly_score": np.nan, "anomaly_model_version": None,
    })


def write_feedback_and_batches(url: str, worker: int, start) -> int:
    """One writer process: 20 feedback records and four overlapping prediction batches; returns the rows it added."""
    engine = create_engine(url)  # an engine of its own; the schema is migrated already
    try:
        store, log, added = FeedbackStore(engine), PredictionLog(engine), 0
        start.wait()  # every writer begins at once
        for i in range(20):
            store.add(f"p{i % 10}", {"type": "unclear", "rating": 1 + (i + worker) % 5, "source": "app"})
            if i % 5 == 0:  # overlapping batches: rows 100 .. 299, each recorded by every worker
                added += log.record_batch("wh", prediction_frame(50, start=100 + 10 * i))
        return added
    finally:
        engine.dispose()


def add_feedback(url: str, ready) -> None:
    store = FeedbackStore(create_engine(url))
    ready.set()
    store.add("p1", {"type": "correct", "rating": 5, "source": "app"})
