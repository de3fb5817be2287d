"""Score a component-failure model on a labelled window: per-component and event-level metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.training.labels import label_column

ID_COLUMNS = ["device_id", "ts", "feature_ts", "split"]


@dataclass
class Evaluation:
    macro_f1: float
    per_component: dict[str, dict[str, float]]
    events: dict[str, float]
    predictions: pd.DataFrame = field(repr=False)
    component_events: dict[str, dict[str, float]] = field(default_factory=dict)

    def flat(self, prefix: str = "test_") -> dict[str, float]:
        """Metrics as flat MLflow-style keys."""
        out = {f"{prefix}macro_f1": self.macro_f1}
        for comp, metrics in self.per_component.items():
            out.update({f"{prefix}{comp}_{k}": float(v) for k, v in metrics.items()})
        out.update({f"{prefix}{k}": float(v) for k, v in self.events.items()})
        for comp, metrics in self.component_events.items():
            out.update({f"{prefix}{comp}_{k}": float(v) for k, v in metrics.items() if k != "mean_lead_time_h"})
        return out

    def recalls(self) -> dict[str, float]:
        return {c: m["recall"] for c, m in self.per_component.items()}


def feature_columns(frame: pd.DataFrame, profile: FleetProfile) -> tuple[list[str], list[str]]:
    """Model inputs (all feature columns) and which of them are categorical."""
    targets = {label_column(c) for c in profile.components}
    features = [c for c in frame.columns if c not in ID_COLUMNS and c not in targets]
    categorical = [a.name for a in profile.source.devices.attributes if a.kind == "categorical" and a.name in features]
    return features, categorical


def targets(frame: pd.DataFrame, profile: FleetProfile) -> pd.DataFrame:
    """0/1 target per component, columns named by component."""
    return pd.DataFrame({c: frame[label_column(c)].astype(int).to_numpy() for c in profile.components}, index=frame.index)


def evaluate(model, frame: pd.DataFrame, profile: FleetProfile, failures: pd.DataFrame) -> Evaluation:
    """Score `model` on `frame` (labelled rows) against its labels and the failure events."""
    from iot_mlops.training.metrics import component_event_metrics, component_metrics, event_metrics, macro_f1
    from iot_mlops.training.model import probabilities

    features, _ = feature_columns(frame, profile)
    X, Y = frame[features], targets(frame, profile)
    prob = probabilities(model, X, profile.components)
    pred = pd.DataFrame(model.predict(X), columns=profile.components, index=frame.index).astype(int)
    per_component = component_metrics(Y, pred, prob)
    scored = pd.concat([frame[["device_id", "ts"]], pred], axis=1)
    events = event_metrics(failures, scored, profile.target.horizon, profile.features.step)
    predictions = pd.concat([frame[["device_id", "ts"]], prob.add_prefix("p_"), pred.add_prefix("pred_"), Y.add_prefix("y_")], axis=1)
    per_event = component_event_metrics(failures, scored, profile.target.horizon, profile.features.step)
    return Evaluation(macro_f1(per_component), per_component, events, predictions, per_event)
