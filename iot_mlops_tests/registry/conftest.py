"""Registry fixtures: MLflow (SQLite store + local artifacts) and the decision log, all under tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops.settings import get_settings
from iot_mlops_tests.registry.models import log_version, tiny_data, tiny_model

# Metrics of the three versions in the populated store: v2 is worse than v1, v3 better.
VERSION_METRICS = {
    "1": (0.70, {"heating_element": 0.80, "valve": 0.60}),
    "2": (0.60, {"heating_element": 0.78, "valve": 0.58}),
    "3": (0.80, {"heating_element": 0.85, "valve": 0.65}),
}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow SQLite store; copying it skips the schema migration (seconds) in every test."""
    path = tmp_path_factory.mktemp("mlflow_empty") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def populated_store(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Path:
    """A store holding three real versions of component_failure (artifacts shared read-only by the copies)."""
    root = tmp_path_factory.mktemp("mlflow_populated")
    shutil.copy(empty_store, root / "mlflow.db")
    registry = ModelRegistry(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")
    X, _ = tiny_data()
    model = tiny_model()
    for macro_f1, recall in VERSION_METRICS.values():
        log_version(registry, model, X, macro_f1, recall)
    return root / "mlflow.db"


@pytest.fixture(autouse=True)
def registry_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Path:
    """Point the MLflow tracking store, its artifacts and the operational store into tmp_path."""
    mlflow_dir = tmp_path / "mlflow"
    mlflow_dir.mkdir()
    shutil.copy(empty_store, mlflow_dir / "mlflow.db")
    monkeypatch.setenv("IOT_MLOPS_MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_dir / 'mlflow.db'}")
    monkeypatch.setenv("IOT_MLOPS_MLFLOW_ARTIFACTS_DIR", str(mlflow_dir / "artifacts"))
    monkeypatch.setenv("IOT_MLOPS_STORE_URL", f"sqlite:///{tmp_path / 'operational.db'}")
    return mlflow_dir


@pytest.fixture
def populated(registry_env: Path, populated_store: Path) -> ModelRegistry:
    """This test's own copy of the three-version store."""
    shutil.copy(populated_store, registry_env / "mlflow.db")
    return ModelRegistry.from_settings()


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry.from_settings()


@pytest.fixture
def decision_log() -> DecisionLog:
    return DecisionLog(get_settings().store)
