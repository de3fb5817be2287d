"""Settings of the prediction service, from the environment (prefix IOT_MLOPS_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Keys, limits and model polling; where data lives comes from iot_mlops.settings.Settings."""

    model_config = SettingsConfigDict(env_prefix="IOT_MLOPS_", extra="ignore", frozen=True)

    api_keys: str = Field("", description="Comma-separated `<sha256hex>:<role>[:<name>]` entries.")
    model_poll_seconds: float = Field(2.0, gt=0, description="How often aliases are checked for a hot-swap.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies get 413.")
    explain_top: int = Field(5, ge=1, le=50, description="Features listed per explanation.")
    max_batch_rows: int = Field(64, ge=1, description="Concurrent requests scored together at most.")
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_workers: int = Field(1, ge=1)
