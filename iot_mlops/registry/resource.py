"""The registry and decision log as one Dagster resource, configured from settings."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops.secrets import secrets_hidden
from iot_mlops.settings import get_settings, psycopg2_url

STORE_URL_VAR = "IOT_MLOPS_STORE_URL"
TRACKING_URI_VAR = "IOT_MLOPS_MLFLOW_TRACKING_URI"


def from_env(variable: str) -> dg.EnvVar | None:
    """`variable` as a Dagster EnvVar when it is set: config, the UI and run storage show its name, never its value."""
    return dg.EnvVar(variable) if os.environ.get(variable) else None


def resolved(value: str | None, default: str) -> str:
    """A field's value, the variable's value for an EnvVar used outside a run, else `default` (from settings)."""
    if isinstance(value, dg.EnvVar):
        value = value.get_value()
    return value or default


class RegistryResource(dg.ConfigurableResource):
    """MLflow tracking store + registry, its artifact root, and the operational store holding the decision log."""

    tracking_uri: str | None = Field(None, description=f"MLflow tracking URI, as EnvVar({TRACKING_URI_VAR!r}); "
                                                       "unset: SQLite under data/mlflow.")
    artifacts_dir: str
    store_url: str | None = Field(None, description=f"Operational store URL, as EnvVar({STORE_URL_VAR!r}); "
                                                    "unset: SQLite under data/.")

    @classmethod
    def from_settings(cls) -> RegistryResource:
        return cls(tracking_uri=from_env(TRACKING_URI_VAR), artifacts_dir=str(get_settings().artifacts),
                   store_url=from_env(STORE_URL_VAR))

    def resolved_tracking_uri(self) -> str:
        return resolved(self.tracking_uri, get_settings().tracking_uri)

    def resolved_store_url(self) -> str:
        return psycopg2_url(resolved(self.store_url, get_settings().store))

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.resolved_tracking_uri(), Path(self.artifacts_dir))

    def decision_log(self) -> DecisionLog:
        url = self.resolved_store_url()
        with secrets_hidden(url):
            return DecisionLog(url)
