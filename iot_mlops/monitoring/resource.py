"""The operational store of predictions and feedback as a Dagster resource (key `store`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from iot_mlops.monitoring.store import FeedbackStore, PredictionLog
from iot_mlops.registry.mlflow_service import psycopg2_url
from iot_mlops.settings import get_settings


class StoreResource(dg.ConfigurableResource):
    """SQLAlchemy URL of the operational store: SQLite under data/ by default, Postgres in production."""

    url: str = Field(description="SQLAlchemy URL (IOT_MLOPS_STORE_URL, default sqlite:///data/operational.db).")

    @classmethod
    def from_settings(cls) -> StoreResource:
        return cls(url=get_settings().store)

    def predictions(self) -> PredictionLog:
        return PredictionLog(psycopg2_url(self.url))

    def feedback(self) -> FeedbackStore:
        return FeedbackStore(psycopg2_url(self.url))
