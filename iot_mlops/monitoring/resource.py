"""The operational store of predictions and feedback as a Dagster resource (key `store`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from iot_mlops.opstore.feedback import FeedbackStore
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.registry.resource import STORE_URL_VAR, from_env, resolved
from iot_mlops.secrets import secrets_hidden
from iot_mlops.settings import get_settings, psycopg2_url


class StoreResource(dg.ConfigurableResource):
    """SQLAlchemy URL of the operational store: SQLite under data/ by default, Postgres in production."""

    url: str | None = Field(None, description=f"SQLAlchemy URL, as EnvVar({STORE_URL_VAR!r}) so config shows the "
                                              "variable's name; unset: sqlite:///data/operational.db.")

    @classmethod
    def from_settings(cls) -> StoreResource:
        return cls(url=from_env(STORE_URL_VAR))

    def resolved_url(self) -> str:
        return psycopg2_url(resolved(self.url, get_settings().store))

    def predictions(self) -> PredictionLog:
        url = self.resolved_url()
        with secrets_hidden(url):
            return PredictionLog(url)

    def feedback(self) -> FeedbackStore:
        url = self.resolved_url()
        with secrets_hidden(url):
            return FeedbackStore(url)
