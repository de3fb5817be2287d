"""Score days of feature rows with a fleet's champions, write them to the lake and register them in the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from iot_mlops.lake import Lake, atomic_write
from iot_mlops.names import model_name
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.predictions.batch import score
from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.registry.mlflow_service import CHAMPION, ModelNotFound, ModelRegistry


@dataclass
class PredictionRun:
    """The days one run scored: the models used, rows per day, alerts and rows newly registered."""

    model: str
    model_version: str
    anomaly_model_version: str | None
    rows_per_day: dict[str, int]
    alerts: int
    registered_in_store: int
    lake_path: Path

    @property
    def metadata(self) -> dict[str, object]:
        """Plain values: a dict shows as JSON, a Path as a path."""
        return {
            "model": self.model, "model_version": self.model_version,
            "anomaly_model_version": self.anomaly_model_version or "none",
            "rows_per_day": self.rows_per_day, "alerts": self.alerts,
            "registered_in_store": self.registered_in_store, "lake_path": self.lake_path,
        }


def predict_days(lake: Lake, registry: ModelRegistry, log: PredictionLog, profile: FleetProfile,
                 days: list[date]) -> PredictionRun:
    """Each day's features scored by the failure champion (and the anomaly champion, if any), one partition per day."""
    fleet = profile.name
    name = model_name(fleet, profile.target.prediction_type)
    version = registry.alias_version(name, CHAMPION)
    if version is None:
        raise ModelNotFound(f"{name} has no champion yet: materialize {fleet}/failure_model and {fleet}/champion_gate first")
    model = registry.load_model(name, CHAMPION)
    anomaly_name = model_name(fleet, "anomaly")
    anomaly_version = registry.alias_version(anomaly_name, CHAMPION)
    anomaly = registry.load_model(anomaly_name, CHAMPION) if anomaly_version else None
    rows, alerts, registered = {}, 0, 0
    for day in days:
        file = lake.partition_file(fleet, "features", day)
        if not file.is_file():
            raise FileNotFoundError(f"{fleet}: no features for {day}; materialize {fleet}/features first")
        scored = score(fleet, pd.read_parquet(file), profile.components, model, name, version, anomaly, anomaly_version)
        target = lake.partition_file(fleet, "predictions", day)
        atomic_write(target, lambda tmp: scored.to_parquet(tmp, index=False))
        registered += log.record_batch(fleet, scored)
        rows[str(day)] = len(scored)
        alerts += int((scored["predicted_component"] != "none").sum())
    return PredictionRun(name, version, anomaly_version, rows, alerts, registered, lake.table_dir(fleet, "predictions"))
