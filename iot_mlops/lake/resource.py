"""Dagster resource giving assets the lake, the landing folder and DuckDB connections."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from iot_mlops.lake.store import Lake, connect
from iot_mlops.settings import get_settings


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake root and the landing folder where fleets drop their files."""

    root: str = Field(description="Lake root folder (IOT_MLOPS_LAKE_DIR, default data/lake).")
    landing_root: str = Field(description="Landing folder (IOT_MLOPS_LANDING_DIR, default data/landing).")
    duckdb_threads: int = Field(0, description="DuckDB threads per step; 0 uses all cores.")

    @classmethod
    def from_settings(cls) -> LakeResource:
        settings = get_settings()
        return cls(root=str(settings.lake), landing_root=str(settings.landing))

    def lake(self) -> Lake:
        return Lake(Path(self.root))

    def landing(self) -> Path:
        return Path(self.landing_root)

    def connect(self) -> duckdb.DuckDBPyConnection:
        return connect(self.duckdb_threads or None)
