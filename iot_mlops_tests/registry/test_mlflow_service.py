"""The MLflow service on a real SQLite store: registration, aliases, and loading through skops only."""

from __future__ import annotations

import os

import mlflow
import mlflow.sklearn
import numpy as np
import pytest

from iot_mlops.registry import mlflow_service
from iot_mlops.registry.mlflow_service import (
    TRUSTED_TYPES,
    ModelNotFound,
    ModelRegistry,
    UntrustedModelError,
    _global_tracking_uri,
    psycopg2_url,
    trusted_types_for,
)
from iot_mlops_tests.registry import models
from iot_mlops_tests.registry.models import FLEET, NAME, log_version, tiny_data, tiny_model, untrusted_model


def test_log_model_version_registers_a_challenger_with_tags_metrics_and_artifacts(registry: ModelRegistry, registry_env):
    X, _ = tiny_data()
    info = log_version(registry, tiny_model(), X, 0.72, {"heating_element": 0.8, "valve": 0.6}, figures=True)

    assert (info.name, info.version, info.model_uri) == (NAME, "1", f"models:/{NAME}/1")
    assert registry.alias_version(NAME, "challenger") == "1"
    assert registry.alias_version(NAME, "champion") is None
    [version] = registry.versions(NAME)
    assert version.aliases == ("challenger",) and version.run_id == info.run_id
    assert version.tags["fleet"] == FLEET and version.tags["dataset_fingerprint"] == "abc123"
    assert version.metrics == {"macro_f1": 0.72, "recall_heating_element": 0.8, "recall_valve": 0.6}  # NaN skipped

    run = registry.client.get_run(info.run_id)
    assert run.info.status == "FINISHED" and run.data.params["horizon_hours"] == "24"
    assert registry.client.get_experiment(run.info.experiment_id).name == FLEET
    artifacts = {a.path for a in registry.client.list_artifacts(info.run_id)}
    assert {"recall_by_component.png", "component_metrics.json"} <= artifacts
    assert run.info.artifact_uri.startswith((registry_env / "artifacts" / FLEET).as_uri())

    model_id = run.outputs.model_outputs[0].model_id
    flavor = mlflow.models.Model.load(f"{registry_env}/artifacts/{FLEET}/models/{model_id}/artifacts")
    assert flavor.flavors["sklearn"]["serialization_format"] == "skops"
    assert flavor.flavors["sklearn"]["skops_trusted_types"] == trusted_types_for(tiny_model())
    assert flavor.signature.inputs.input_names() == list(X.columns)
    [summary] = registry.list_models()
    assert (summary.name, summary.champion, summary.challenger, summary.latest_version) == (NAME, None, "1", "1")
    assert summary.versions == 1
    # The fluent call's tracking URI was restored: nothing leaks into the process.
    assert not mlflow.is_tracking_uri_set() and "MLFLOW_TRACKING_URI" not in os.environ


def test_champion_loads_back_through_skops_with_the_allow_list(populated: ModelRegistry):
    X, _ = tiny_data()
    populated.set_alias(NAME, "champion", "2")
    loaded = populated.load_model(NAME)
    np.testing.assert_array_equal(loaded.predict(X), tiny_model().predict(X))
    assert set(trusted_types_for(loaded)) <= TRUSTED_TYPES
    with pytest.raises(ModelNotFound, match="no version with alias 'staging'"):
        populated.load_model(NAME, alias="staging")
    with pytest.raises(ModelNotFound, match="'unknown'"):
        populated.load_model("unknown")


def test_loading_a_model_draws_no_progress_bars(populated: ModelRegistry, capfd):
    populated.set_alias(NAME, "champion", "2")
    capfd.readouterr()
    populated.load_model(NAME)
    out, err = capfd.readouterr()
    assert "Downloading artifacts" not in out + err


def test_untrusted_types_are_refused_when_logging(registry: ModelRegistry):
    X, _ = tiny_data()
    with pytest.raises(UntrustedModelError, match="add_noise_column"):
        trusted_types_for(untrusted_model())
    with pytest.raises(UntrustedModelError):
        log_version(registry, untrusted_model(), X, 0.9, {"valve": 1.0})
    assert registry.list_models() == [] and registry.client.get_experiment_by_name(FLEET) is None


def test_a_version_whose_artifact_trusts_more_types_is_not_loaded(registry: ModelRegistry, monkeypatch):
    """Its MLmodel file lists a user function as trusted; loading refuses rather than believe the artifact."""
    X, _ = tiny_data()
    with monkeypatch.context() as patch:
        patch.setattr(mlflow_service, "TRUSTED_TYPES", TRUSTED_TYPES | {f"{models.__name__}.add_noise_column"})
        log_version(registry, untrusted_model(), X, 0.9, {"valve": 1.0}, name="rogue")
    registry.set_alias("rogue", "champion", "1")
    with pytest.raises(UntrustedModelError, match="add_noise_column"):
        registry.load_model("rogue")


def test_versions_and_aliases(populated: ModelRegistry):
    assert [v.version for v in populated.versions(NAME)] == ["1", "2", "3"]
    populated.set_alias(NAME, "champion", "1")
    populated.tag_version(NAME, "1", "gate", "passed")
    versions = {v.version: v for v in populated.versions(NAME)}
    assert versions["1"].aliases == ("champion",) and versions["1"].tags["gate"] == "passed"
    assert versions["3"].aliases == ("challenger",) and versions["2"].metrics["macro_f1"] == 0.6
    populated.delete_alias(NAME, "challenger")
    assert populated.alias_version(NAME, "challenger") is None
    [summary] = populated.list_models()
    assert (summary.champion, summary.challenger, summary.latest_version, summary.versions) == ("1", None, "3", 3)
    with pytest.raises(ModelNotFound):
        populated.versions("unknown")
    assert populated.alias_version("unknown", "champion") is None


def test_postgres_urls_use_psycopg2():
    assert psycopg2_url("postgresql://u@h:5432/db") == "postgresql+psycopg2://u@h:5432/db"
    assert psycopg2_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert psycopg2_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_global_tracking_uri_is_restored_exactly(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    with _global_tracking_uri("sqlite:///mine.db"):
        assert mlflow.get_tracking_uri() == "sqlite:///mine.db"
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow.get_tracking_uri() == "sqlite:///elsewhere.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert not mlflow.is_tracking_uri_set()  # restored as the environment's value, not pinned globally
