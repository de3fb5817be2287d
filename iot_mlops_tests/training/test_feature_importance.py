"""Permutation importance on the prepared matrix equals permuting raw columns through the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from iot_mlops.profiles import load_profiles
from iot_mlops.training.evaluate import targets
from iot_mlops.training.labels import label_column
from iot_mlops.training.model import ModelConfig, build_pipeline, macro_fbeta, with_thresholds
from iot_mlops.training.runs import feature_importance, prepared_columns

PROFILE = load_profiles(Path(__file__).parents[2] / "profiles")["water_heaters"]


def frame(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"signal": rng.normal(size=rows), "noise": rng.normal(size=rows),
                         "model": rng.choice(["A", "B", "C"], size=rows), "split": ["train"] * (rows // 2) + ["test"] * (rows - rows // 2)})
    labels = {"heating_element": data["signal"] > 0.8, "tank": data["model"] == "B",
              "thermostat": data["signal"] < -0.8, "seal": (data["signal"] > 0) & (data["model"] == "C")}
    for component in PROFILE.components:
        data[label_column(component)] = labels[component]
    return data


def trained(data: pd.DataFrame) -> SimpleNamespace:
    features, train = ["signal", "noise", "model"], data[data["split"] == "train"]
    Y = targets(train, PROFILE)
    model = build_pipeline(ModelConfig(algorithm="logistic_regression"), ["model"]).fit(train[features], Y.to_numpy())
    return SimpleNamespace(model=with_thresholds(model, dict.fromkeys(PROFILE.components, 0.5), train[features], Y), features=features)


def test_importance_equals_permuting_raw_columns_through_the_pipeline():
    data = frame()
    result = trained(data)
    found = feature_importance(result, data, PROFILE, rows=250, repeats=2)

    sample = data[data["split"] == "test"].sample(250, random_state=0)
    truth, raw = targets(sample, PROFILE).to_numpy(), sample[result.features].reset_index(drop=True)
    baseline, rng, expected = macro_fbeta(truth, result.model.predict(raw), 1.0), np.random.default_rng(0), {}
    for feature in result.features:
        drops = []
        for _ in range(2):
            shuffled = raw.copy()
            shuffled[feature] = raw[feature].to_numpy()[rng.permutation(len(raw))]
            drops.append(baseline - macro_fbeta(truth, result.model.predict(shuffled), 1.0))
        expected[feature] = np.mean(drops)
    pd.testing.assert_series_equal(found.sort_index(), pd.Series(expected).sort_index())
    assert found.index[0] in ("signal", "model") and found["noise"] < found["signal"]


def test_a_categorical_feature_owns_its_whole_one_hot_block():
    result = trained(frame())
    columns = prepared_columns(result.model.named_steps["prep"], result.features)
    assert columns == {"model": [0, 1, 2], "signal": [3], "noise": [4]}
