"""The predictions[day] asset: the champion scores every feature row of the day, with stable ids."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iot_mlops.lake import Lake
from iot_mlops.lake.resource import LakeResource
from iot_mlops.predictions.batch import prediction_ids
from iot_mlops.registry.mlflow_service import CHAMPION
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.training.anomaly import anomaly_scores
from iot_mlops_tests.fleet import materializations
from iot_mlops_tests.training import pipeline
from iot_mlops_tests.training.pipeline import AZURE, AzureTrained, copy_registry, step_error

DAY = date(2015, 3, 20)


@dataclass
class Scoring:
    trained: AzureTrained
    lake: LakeResource
    registry: RegistryResource

    def run(self, day: date = DAY):
        return pipeline.run(self.trained.assets, self.lake, self.registry, "predictions", fleet=AZURE, day=day)

    def file(self, table: str, day: date = DAY) -> Path:
        return Lake(Path(self.lake.root)).partition_file(AZURE, table, day)


@pytest.fixture
def scoring(azure_trained: AzureTrained, tmp_path: Path) -> Scoring:
    """A private lake holding the day's features, and a private copy of the registry (v1 champions)."""
    source = Lake(azure_trained.lake_root).partition_file(AZURE, "features", DAY)
    target = Lake(tmp_path / "lake").partition_file(AZURE, "features", DAY)
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    lake = LakeResource(root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))
    return Scoring(azure_trained, lake, copy_registry(azure_trained.registry, tmp_path / "registry"))


def test_predictions_score_every_feature_row_with_the_champion(scoring: Scoring):
    trained, store = scoring.trained, scoring.registry.registry()
    result = scoring.run()
    assert result.success
    predictions, features = pd.read_parquet(scoring.file("predictions")), pd.read_parquet(scoring.file("features"))

    assert len(predictions) == len(features) > 0
    assert list(zip(predictions["device_id"], predictions["ts"])) == list(zip(features["device_id"], features["ts"]))
    version = store.alias_version(trained.failure_name, CHAMPION)
    assert set(predictions["model_name"]) == {trained.failure_name} and set(predictions["model_version"]) == {version}
    assert predictions["prediction_id"].is_unique

    components = trained.profile.components
    probabilities = predictions[[f"p_{c}" for c in components]]
    assert ((probabilities >= 0) & (probabilities <= 1)).all().all()
    # The champion, loaded independently, gives the same probabilities and alerts.
    champion = store.load_model(trained.failure_name, CHAMPION)
    X = features[list(champion.feature_names_in_)]
    for comp, proba, alerts in zip(components, champion.predict_proba(X), champion.predict(X).T):
        np.testing.assert_allclose(predictions[f"p_{comp}"], proba[:, 1], atol=1e-6)
        assert predictions[f"alert_{comp}"].tolist() == alerts.astype(int).tolist()
    alerted = predictions[[f"alert_{c}" for c in components]].to_numpy().astype(bool)
    strongest = [components[i] for i in np.where(alerted, probabilities.to_numpy(), -1).argmax(axis=1)]
    assert predictions["predicted_component"].tolist() == [s if a.any() else "none" for s, a in zip(strongest, alerted)]

    anomaly_version = store.alias_version(trained.anomaly_name, CHAMPION)
    anomaly = store.load_model(trained.anomaly_name, CHAMPION)
    np.testing.assert_allclose(predictions["anomaly_score"], anomaly_scores(anomaly, features[list(anomaly.feature_names_in_)]),
                               atol=1e-6)
    assert set(predictions["anomaly_model_version"]) == {anomaly_version}

    meta = materializations(result)[("predictions", DAY.isoformat())]
    assert (meta["model"], meta["model_version"], meta["anomaly_model_version"]) == (trained.failure_name, version, anomaly_version)
    assert meta["rows_per_day"] == {DAY.isoformat(): len(features)}
    assert meta["alerts"] == int((predictions["predicted_component"] != "none").sum())

    # Re-running the day replaces the partition with the same rows and the same prediction ids.
    assert scoring.run().success
    pd.testing.assert_frame_equal(pd.read_parquet(scoring.file("predictions")), predictions)


def test_prediction_ids_name_the_row_and_the_model_version():
    frame = pd.DataFrame({"device_id": ["1", "1", "2"], "ts": pd.to_datetime(["2015-03-20 03:00", "2015-03-20 06:00", "2015-03-20 03:00"])})
    ids = prediction_ids(AZURE, frame, "m", "1")
    assert len(set(ids)) == 3 and ids == prediction_ids(AZURE, frame, "m", "1")
    assert not set(ids) & set(prediction_ids(AZURE, frame, "m", "2"))
    assert not set(ids) & set(prediction_ids("other_fleet", frame, "m", "1"))


def test_without_an_anomaly_champion_the_anomaly_score_is_empty(scoring: Scoring):
    scoring.registry.registry().delete_alias(scoring.trained.anomaly_name, CHAMPION)
    assert scoring.run().success
    predictions = pd.read_parquet(scoring.file("predictions"))
    assert predictions["anomaly_score"].isna().all() and predictions["anomaly_model_version"].isna().all()
    assert predictions[[f"p_{c}" for c in scoring.trained.profile.components]].notna().all().all()


def test_a_day_without_feature_rows_writes_an_empty_partition(scoring: Scoring):
    """A fleet offline for a day has an empty features partition; scoring it must not crash."""
    quiet = date(2015, 3, 21)
    features = pd.read_parquet(scoring.file("features"))
    scoring.file("features", quiet).parent.mkdir(parents=True)
    features.iloc[:0].to_parquet(scoring.file("features", quiet), index=False)
    assert scoring.run().success and scoring.run(quiet).success

    busy, empty = pd.read_parquet(scoring.file("predictions")), pd.read_parquet(scoring.file("predictions", quiet))
    assert len(empty) == 0 and list(empty.columns) == list(busy.columns)
    assert empty.dtypes[[c for c in busy.columns if c.startswith(("p_", "alert_", "ts"))]].equals(
        busy.dtypes[[c for c in busy.columns if c.startswith(("p_", "alert_", "ts"))]])


def test_without_a_champion_predictions_fail_naming_what_to_materialize(scoring: Scoring):
    store = scoring.registry.registry()
    store.delete_alias(scoring.trained.failure_name, CHAMPION)
    result = scoring.run()
    assert not result.success
    message = step_error(result)
    assert f"{scoring.trained.failure_name} has no champion" in message
    assert f"{AZURE}/failure_model" in message and f"{AZURE}/champion_gate" in message
    assert not scoring.file("predictions").exists()


def test_a_day_without_features_fails_naming_the_features_asset(scoring: Scoring):
    result = scoring.run(date(2015, 3, 21))
    assert not result.success
    assert f"materialize {AZURE}/features first" in step_error(result)
