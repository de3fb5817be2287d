"""The synthetic fleet wired with every asset (labels, training dataset, ...), for tests of the training side."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from iot_mlops.lake.resource import LakeResource
from iot_mlops_tests.fleet import DAYS, Fleet
from iot_mlops_tests.training import pipeline

HORIZON = timedelta(hours=6)
INGEST = ("devices", "telemetry", "events", "features")
ALL_DAYS = (DAYS[0], DAYS[-1])


class TinyPipeline:
    """A Fleet plus the training assets; the registry resource points into the test's folder (never shared)."""

    def __init__(self, fleet: Fleet, registry_dir: Path):
        self.fleet = fleet
        self.registry = pipeline.registry_resource(registry_dir)

    @property
    def name(self) -> str:
        return self.fleet.name

    @property
    def lake(self) -> LakeResource:
        return LakeResource(root=str(self.fleet.lake_root), landing_root=str(self.fleet.landing_root))

    def run(self, *tables: str, days: tuple[date, date] | None = None, day: date | None = None,
            config: dict | None = None) -> dg.ExecuteInProcessResult:
        profile = self.fleet.profile()
        return pipeline.run(pipeline.all_assets(profile, self.fleet.profile_dir), self.lake, self.registry, *tables,
                            fleet=self.name, days=days, day=day, config=config)

    def build(self, days: tuple[date, date] = ALL_DAYS) -> None:
        """Ingest, featurize and label the days, then build the training dataset (time split)."""
        assert self.run(*INGEST, days=days).success
        assert self.run("labels", days=days).success
        assert self.run("training_dataset").success

    def read(self, table: str, days: list[date] | None = None) -> pd.DataFrame:
        if days is None:
            return self.fleet.read(table)
        return pd.concat([self.fleet.read(table, d) for d in days], ignore_index=True)
