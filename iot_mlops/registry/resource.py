"""The registry and decision log as one Dagster resource, configured from settings."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from iot_mlops.registry.decisions import DecisionLog
from iot_mlops.registry.mlflow_service import ModelRegistry, psycopg2_url
from iot_mlops.settings import get_settings


class RegistryResource(dg.ConfigurableResource):
    """MLflow tracking store + registry, its artifact root, and the operational store holding the decision log."""

    tracking_uri: str
    artifacts_dir: str
    store_url: str

    @classmethod
    def from_settings(cls) -> RegistryResource:
        settings = get_settings()
        return cls(tracking_uri=settings.tracking_uri, artifacts_dir=str(settings.artifacts), store_url=settings.store)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, Path(self.artifacts_dir))

    def decision_log(self) -> DecisionLog:
        return DecisionLog(psycopg2_url(self.store_url))
