"""Batch predictions are registered in the operational store, so feedback can refer to their ids."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from iot_mlops.lake.resource import LakeResource
from iot_mlops.names import model_name
from iot_mlops.opstore.feedback import FeedbackError, FeedbackStore
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.partitions import FleetContext
from iot_mlops.predictions.assets import prediction_assets
from iot_mlops.registry.mlflow_service import CHAMPION, ModelRegistry
from iot_mlops_tests.fleet import DAYS, Fleet, materializations, stamp
from iot_mlops_tests.registry.models import log_version, tiny_data, tiny_model
from iot_mlops_tests.training.pipeline import registry_resource

DAY = DAYS[1]


def test_batch_predictions_are_registered_once_and_take_feedback(tmp_path: Path):
    fleet = Fleet(tmp_path / "fleet", tmp_path / "lake", tmp_path / "landing")
    fleet.spec["components"] = ["heating_element", "valve"]  # what the tiny registry model predicts
    profile = fleet.write_profile()
    registry = registry_resource(tmp_path / "registry")
    store = ModelRegistry(registry.tracking_uri, Path(registry.artifacts_dir))
    X, _ = tiny_data()
    name = model_name(profile.name, profile.target.prediction_type)
    version = log_version(store, tiny_model(), X, 0.7, {"heating_element": 0.8, "valve": 0.6}, name=name).version
    store.set_alias(name, CHAMPION, version)

    features = X.head(48).assign(device_id=[f"d{i % 3}" for i in range(48)], ts=[stamp(DAY, i // 3) for i in range(48)])
    file = fleet.lake.partition_file(fleet.name, "features", DAY)
    file.parent.mkdir(parents=True)
    features.astype({"ts": "datetime64[us]"}).to_parquet(file, index=False)

    lake = LakeResource(root=str(fleet.lake_root), landing_root=str(fleet.landing_root))

    def run():
        result = dg.materialize(prediction_assets(FleetContext.of(profile, fleet.profile_dir)), partition_key=DAY.isoformat(),
                                resources={"lake": lake, "registry": registry}, instance=dg.DagsterInstance.ephemeral())
        assert result.success
        return materializations(result)[("predictions", DAY.isoformat())]

    assert run()["registered_in_store"] == 48
    predictions = pd.read_parquet(fleet.lake.partition_file(fleet.name, "predictions", DAY))
    log = PredictionLog(registry.store_url)
    assert log.count(fleet.name, source="batch") == 48
    row = predictions.iloc[7]
    stored = log.get(row["prediction_id"])
    assert stored["probabilities"] == {"heating_element": row["p_heating_element"], "valve": row["p_valve"]}
    assert (stored["device_id"], stored["ts"], stored["model_version"]) == (row["device_id"], row["ts"].to_pydatetime(), version)

    # Re-materializing the day registers nothing twice.
    assert run()["registered_in_store"] == 0 and log.count() == 48

    alerts = predictions[predictions["predicted_component"] != "none"]
    assert len(alerts) > 0
    feedback = FeedbackStore(registry.store_url)
    pid = alerts["prediction_id"].iloc[0]
    fid = feedback.add(pid, {"type": "false_positive", "rating": 2, "source": "technician", "outcome_component": "valve"})
    assert [(r.id, r.prediction_id, r.fleet) for r in feedback.list()] == [(fid, pid, fleet.name)]
    with pytest.raises(FeedbackError, match="'impeller' is not a component of fleet tiny"):
        feedback.add(pid, {"type": "correct", "rating": 4, "source": "app", "outcome_component": "impeller"})
