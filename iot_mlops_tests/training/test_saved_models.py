"""Models saved by the failure_model and anomaly_model assets load back through skops with the trusted list only."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import skops.io
from mlflow.models import Model
from skops.io.exceptions import UntrustedTypesFoundException

from iot_mlops.registry.mlflow_service import CHAMPION, TRUSTED_TYPES, trusted_types_for
from iot_mlops.training.anomaly import anomaly_metrics
from iot_mlops.training.evaluate import evaluate
from iot_mlops_tests.training.pipeline import AZURE, AzureTrained, failures


def download(store, name: str, version: str, target: Path) -> Path:
    uri = store.client.get_model_version_download_uri(name, version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target), tracking_uri=store.tracking_uri))


@pytest.mark.parametrize("kind", ["failure", "anomaly"])
def test_saved_model_loads_through_skops_with_the_trusted_list(azure_trained: AzureTrained, kind: str, tmp_path: Path):
    trained = azure_trained
    store = trained.registry.registry()
    name = trained.failure_name if kind == "failure" else trained.anomaly_name
    version = store.alias_version(name, CHAMPION)
    model = store.load_model(name, CHAMPION)
    needed = trusted_types_for(model)  # raises if the model needed anything outside the allow-list
    assert set(needed) <= TRUSTED_TYPES

    # The artifact is a skops file declaring exactly those types; skops refuses it without them.
    folder = download(store, name, version, tmp_path)
    flavor = Model.load(folder).flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"
    assert sorted(flavor["skops_trusted_types"]) == sorted(needed)
    file = folder / flavor["pickled_model"]
    assert not list(folder.glob("*.pkl"))
    with pytest.raises(UntrustedTypesFoundException):
        skops.io.load(file)
    skops.io.load(file, trusted=flavor["skops_trusted_types"])

    # The loaded model is the trained one: it reproduces the test metrics logged when it was trained.
    logged = next(v for v in store.versions(name) if v.version == version).metrics
    holdout = trained.test_rows()
    if kind == "failure":
        assert evaluate(model, holdout, trained.profile, failures(trained.lake_root, AZURE)).macro_f1 == pytest.approx(
            logged["test_macro_f1"])
    else:
        assert anomaly_metrics(model, holdout, trained.profile)["any_failure_roc_auc"] == pytest.approx(
            logged["test_any_failure_roc_auc"])
