"""A served fleet: real models (the project's pipelines on a small synthetic frame) registered in MLflow under
tmp, online feature rows in a tmp lake, and the API over SQLite or the local Postgres server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_limits

from iot_mlops.lake import Lake, atomic_write
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.registry.lifecycle import promote
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops.serving.app import create_app
from iot_mlops.serving.auth import hash_key
from iot_mlops.serving.config import ServingSettings
from iot_mlops.settings import Settings, psycopg2_url
from iot_mlops.training.anomaly import anomaly_pipeline
from iot_mlops.training.model import ModelConfig, build_pipeline, with_thresholds
from iot_mlops_tests.conftest import postgres_database
from iot_mlops_tests.fleet import PROFILES

FLEET, DEVICE_TYPE = "water_heaters", "water_heater"
FAILURE, ANOMALY = "water_heaters_component_failure", "water_heaters_anomaly"
COMPONENTS = ["heating_element", "tank", "thermostat", "seal"]
NUMERIC = ["temperature_c_mean_24h", "pressure_bar_max_24h", "flow_lpm_mean_6h", "power_kw_std_24h",
           "element_current_a_mean_1h", "errors_E01_24h", "hours_since_maintenance_heating_element", "age_years"]
FRESH = [f"WH-{1001 + i}" for i in range(8)]
STALE = "WH-2000"
KEYS = {"reader": "reader-key-1", "operator": "operator-key-2", "admin": "admin-key-3"}
POLL = 0.2


def headers(role: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[role]}


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({c: rng.normal(0, 1, rows) for c in NUMERIC})
    X["temperature_c_mean_24h"] = 60 + 8 * X["temperature_c_mean_24h"]
    X["model"] = rng.choice(["HX-100", "HX-200", "TX-9"], rows)
    return X


def targets(X: pd.DataFrame, seed: int) -> pd.DataFrame:
    noise = np.random.default_rng(seed).normal(0, 0.7, (len(X), 4))
    score = np.column_stack([(X["temperature_c_mean_24h"] - 60) / 8, X["pressure_bar_max_24h"] + (X["model"] == "TX-9"),
                             X["element_current_a_mean_1h"] - X["flow_lpm_mean_6h"], X["hours_since_maintenance_heating_element"]])
    return pd.DataFrame((score + noise > 1.3).astype(int), columns=COMPONENTS)


def failure_model(algorithm: str, params: dict | None = None):
    X = frame(600, 1)
    Y = targets(X, 2)
    with threadpool_limits(1):
        model = build_pipeline(ModelConfig(algorithm=algorithm), ["model"], params).fit(X, Y.to_numpy())
        return with_thresholds(model, {c: 0.35 for c in COMPONENTS}, X, Y)


def register(registry: ModelRegistry, name: str, model, macro_f1: float) -> str:
    X = frame(20, 3)
    kind = "anomaly" if name == ANOMALY else "component_failure"
    info = registry.log_model_version(fleet=FLEET, model_name=name, model=model, X_example=X, params={"rows": 600},
                                      metrics={"test_macro_f1": macro_f1}, tags={"prediction_type": kind}, figures={},
                                      json_artifacts={}, run_name=f"{name}-{macro_f1}")
    return info.version


@dataclass(frozen=True)
class Served:
    """Template registry: failure v1 (logistic regression) and v2 (boosted trees) passed the gate, v2 champion,
    v3 (random forest) challenger; anomaly v1 champion."""

    root: Path

    def copy(self, target: Path) -> tuple[str, Path]:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.root / "mlflow.db", target / "mlflow.db")
        return f"sqlite:///{target / 'mlflow.db'}", self.root / "artifacts"


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("served")
    registry = ModelRegistry(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")
    log = DecisionLog(f"sqlite:///{root / 'decisions.db'}")
    for version_algorithm, f1 in ((("logistic_regression", None), 0.6), (("gradient_boosting", {"max_iter": 40}), 0.7)):
        version = register(registry, FAILURE, failure_model(*version_algorithm), f1)
        promote(registry, log, fleet=FLEET, name=FAILURE, version=version, reason="setup", actor="tests")
    register(registry, FAILURE, failure_model("random_forest", {"randomforestclassifier__n_estimators": 15}), 0.75)
    with threadpool_limits(1):
        anomaly = anomaly_pipeline(["model"]).set_params(forest__n_estimators=50, forest__max_samples=256).fit(frame(400, 4))
    promote(registry, log, fleet=FLEET, name=ANOMALY, version=register(registry, ANOMALY, anomaly, 0.5), reason="setup",
            actor="tests")
    return Served(root)


def online_rows(now: datetime) -> pd.DataFrame:
    """Fresh rows (an hour old at most) for FRESH, an old one for STALE; one missing value."""
    devices = [*FRESH, STALE]
    rows = frame(len(devices), 5)
    fresh = (now - timedelta(minutes=30)).replace(tzinfo=None)
    rows.insert(0, "ts", [fresh] * len(FRESH) + [fresh - timedelta(hours=10)])
    rows.insert(0, "device_id", devices)
    rows.loc[1, "power_kw_std_24h"] = np.nan
    return rows


def write_online(lake_root: Path, fleet: str, rows: pd.DataFrame) -> Path:
    target = Lake(lake_root).table_file(fleet, "online_features")
    atomic_write(target, lambda tmp: rows.to_parquet(tmp, index=False))
    return target


@dataclass
class Api:
    client: TestClient
    settings: Settings
    registry: ModelRegistry
    online: pd.DataFrame

    def get(self, path: str, role: str | None = "reader", **kwargs):
        return self.client.get(path, headers=headers(role) if role else {}, **kwargs)

    def post(self, path: str, role: str | None = "operator", **kwargs):
        return self.client.post(path, headers=headers(role) if role else {}, **kwargs)

    def predict(self, device: str = FRESH[0], kind: str = "component_failure", role: str = "reader"):
        return self.get(f"/api/predictions/{DEVICE_TYPE}/{device}/{kind}", role)

    def decisions(self) -> DecisionLog:
        return DecisionLog(psycopg2_url(self.settings.store))


def serving_settings(**overrides) -> ServingSettings:
    keys = ",".join(f"{hash_key(key)}:{role}:{role}-client" for role, key in KEYS.items())
    return ServingSettings(api_keys=keys, model_poll_seconds=POLL, max_body_bytes=16_000, **overrides)


def served_settings(root: Path, served: Served, store_url: str, rows: pd.DataFrame | None = None) -> Settings:
    """Settings over a private copy of the served registry, online features `rows` (default: fresh) and a store."""
    tracking_uri, artifacts = served.copy(root / "mlflow")
    write_online(root / "lake", FLEET, online_rows(datetime.now(UTC)) if rows is None else rows)
    return Settings(data_dir=root / "data", profiles_dir=PROFILES, lake_dir=root / "lake", store_url=store_url,
                    mlflow_tracking_uri=tracking_uri, mlflow_artifacts_dir=artifacts)


@contextmanager
def running_api(root: Path, served: Served, store_url: str, *, lake_rows: pd.DataFrame | None = None,
                serving: ServingSettings | None = None) -> Iterator[Api]:
    """The app (lifespan started) over a private copy of the served registry, a lake and a store."""
    rows = online_rows(datetime.now(UTC)) if lake_rows is None else lake_rows
    settings = served_settings(root, served, store_url, rows)
    with TestClient(create_app(settings, serving or serving_settings())) as client:
        yield Api(client, settings, ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir), rows)




@contextmanager
def store(kind: str, root: Path) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{root / 'operational.db'}"


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, served: Served) -> Iterator[Api]:
    """One running app per store for the session, for tests that leave the model aliases alone."""
    root = tmp_path_factory.mktemp(f"api_{request.param}")
    with store(request.param, root) as url, running_api(root, served, url) as running:
        yield running


@pytest.fixture
def fresh_api(tmp_path: Path, served: Served) -> Iterator[Api]:
    """A private app on SQLite, for tests that move aliases."""
    with running_api(tmp_path / "api", served, f"sqlite:///{tmp_path / 'operational.db'}") as running:
        yield running
