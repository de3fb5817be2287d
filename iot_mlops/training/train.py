"""Train the component-failure model on a training dataset: search, thresholds, refit, test."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.pipeline import Pipeline

from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.training.evaluate import Evaluation, evaluate, feature_columns, targets
from iot_mlops.training.labels import label_column
from iot_mlops.training.model import AlarmBudget, ModelConfig, SearchResult, build_pipeline, search, time_folds, with_thresholds


class TrainingDataError(ValueError):
    """Too little data to train: a component never fails in the training window."""


@dataclass
class TrainingResult:
    model: Pipeline
    thresholds: dict[str, float]
    params: dict
    search: SearchResult
    features: list[str]
    categorical: list[str]
    test: Evaluation
    rows: dict[str, int]


def train_failure_model(frame: pd.DataFrame, profile: FleetProfile, failures: pd.DataFrame, config: ModelConfig) -> TrainingResult:
    """Search hyperparameters and thresholds on time folds ending with validation, refit, score on test."""
    features, categorical = feature_columns(frame, profile)
    seen = frame[frame["split"].isin(["train", "validation"])].reset_index(drop=True)
    test = frame[frame["split"] == "test"]
    valid = seen[seen["split"] == "validation"]
    missing = [c for c in profile.components if not seen[label_column(c)].any()]
    if missing:
        raise TrainingDataError(f"{profile.name}: no failures of {', '.join(missing)} in the training window; widen the window")
    gap = pd.Timedelta(profile.target.horizon)
    folds = time_folds(seen["ts"], valid["ts"].min(), valid["ts"].max() + pd.Timedelta(seconds=1), config.search_folds, gap)
    labels = targets(seen, profile).to_numpy()
    # A fold whose past holds no failure of some component cannot train that component's model.
    folds = [(train, test) for train, test in folds if labels[train].min(axis=0).min() == 0 and labels[train].max(axis=0).min() == 1]
    if not folds:
        raise TrainingDataError(f"{profile.name}: every component must fail before the validation part; widen the window")
    earliest = seen.iloc[folds[0][0]] if folds else seen
    # A column with fewer than two distinct values where the first fold trains carries no signal
    # and breaks histogram binning; every later fit sees a superset of those rows.
    features = [c for c in features if c in categorical or earliest[c].nunique(dropna=True) >= 2]
    limit = profile.training.max_false_alarms_per_device_month
    budget = None if limit is None else AlarmBudget(limit, pd.Timedelta(profile.features.step))
    found = search(config, seen[features], targets(seen, profile), folds, categorical, seen[["device_id", "ts"]], budget)
    final = build_pipeline(config, categorical, found.params).fit(seen[features], targets(seen, profile).to_numpy())
    final = with_thresholds(final, found.thresholds, seen[features], targets(seen, profile))
    return TrainingResult(
        model=final, thresholds=found.thresholds, params=found.params, search=found, features=features,
        categorical=categorical, test=evaluate(final, test, profile, failures),
        rows={"train": int((seen["split"] == "train").sum()), "validation": len(valid), "test": len(test)},
    )
