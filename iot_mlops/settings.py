"""Settings from the environment (prefix IOT_MLOPS_); every default is embedded and local."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where state lives. Relative paths are relative to the working directory."""

    model_config = SettingsConfigDict(env_prefix="IOT_MLOPS_", extra="ignore", frozen=True)

    data_dir: Path = Path("data")
    profiles_dir: Path = Path("profiles")
    lake_dir: Path | None = None
    landing_dir: Path | None = None
    store_url: str | None = None  # operational store (SQLAlchemy URL); SQLite under data/ by default
    mlflow_tracking_uri: str | None = None  # SQLite under data/mlflow by default
    mlflow_artifacts_dir: Path | None = None
    sensor_interval_seconds: int = Field(60, ge=1)  # least time between two evaluations of a retraining sensor
    # Fleets whose retraining sensors run from the start, without a toggle in the UI (comma-separated).
    sensors_running: str = ""
    # Hyperparameter search of sensor-started retraining runs; unset keeps the failure_model config defaults.
    retraining_search_iterations: int | None = Field(None, ge=1)
    retraining_search_folds: int | None = Field(None, ge=2)
    mlflow_ui_url: str = "http://127.0.0.1:5000"  # where `mlflow ui` serves; metadata links to run pages there
    # Days per run of a backfill of the daily assets (BackfillPolicy.multi_run); unset: the whole range in one run.
    backfill_partitions_per_run: int | None = Field(None, ge=1)
    # The code location's default executor: celery sends every step to the workers (CelerySettings).
    executor: Literal["multiprocess", "celery"] = "multiprocess"

    @property
    def sensors_running_fleets(self) -> set[str]:
        return {f.strip() for f in self.sensors_running.split(",") if f.strip()}

    @property
    def lake(self) -> Path:
        return (self.lake_dir or self.data_dir / "lake").resolve()

    @property
    def landing(self) -> Path:
        return (self.landing_dir or self.data_dir / "landing").resolve()

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{(self.data_dir / 'operational.db').resolve()}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def artifacts(self) -> Path:
        return (self.mlflow_artifacts_dir or self.data_dir / "mlflow" / "artifacts").resolve()


class CelerySettings(BaseSettings):
    """Broker, result backend and queue of the celery executor and of its workers (prefix IOT_MLOPS_CELERY_)."""

    model_config = SettingsConfigDict(env_prefix="IOT_MLOPS_CELERY_", extra="ignore", frozen=True)

    broker: str = "pyamqp://guest:guest@127.0.0.1:5672//"
    backend: str = "rpc://"
    queue: str = "dagster"
    result_expires: int = 300  # a run polls its reply queue every second; celery's default keeps it a day

    def executor_config(self) -> dict:
        """The config of dagster-celery's executor."""
        return {"broker": self.broker, "backend": self.backend,
                "config_source": {"task_default_queue": self.queue, "result_expires": self.result_expires}}


def get_settings() -> Settings:
    """Read settings now (not at import), so tests and CLIs can change the environment."""
    return Settings()


def psycopg2_url(url: str) -> str:
    """SQLAlchemy 2.1 maps bare `postgresql://` to psycopg 3; this project ships psycopg2."""
    return "postgresql+psycopg2://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url
