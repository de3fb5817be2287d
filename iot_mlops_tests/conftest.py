"""Shared fixtures: an isolated environment, a synthetic fleet, and the Azure PdM data set."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from iot_mlops.features.assets import features_assets
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake.resource import LakeResource
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import FleetProfile, load_profile, source_folder
from iot_mlops_tests.fleet import PROFILES, RANGE_END, RANGE_START, Fleet
from iot_mlops_tests.training import pipeline

AZURE_FILES = ("telemetry.parquet", "machines.parquet", "errors.parquet", "maint.parquet", "failures.parquet")
# A test asking for one of these needs a service (integration), or pays for the Azure backfill or training (slow).
INTEGRATION_FIXTURES = {"postgres_url", "broker", "mqtt_fleet"}
SLOW_FIXTURES = {"azure_backfill", "azure_lake", "azure_labelled", "azure_trained"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point data, lake and landing at tmp_path and DAGSTER_HOME at an empty folder of its own."""
    monkeypatch.setenv("IOT_MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IOT_MLOPS_LAKE_DIR", str(tmp_path / "data" / "lake"))
    monkeypatch.setenv("IOT_MLOPS_LANDING_DIR", str(tmp_path / "data" / "landing"))
    monkeypatch.setenv("IOT_MLOPS_PROFILES_DIR", str(PROFILES))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    return tmp_path


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    """The synthetic fleet with its profile written and clean data for every day."""
    fleet = Fleet(tmp_path / "fleet", tmp_path / "data" / "lake", tmp_path / "data" / "landing")
    fleet.write_profile()
    fleet.write_clean()
    return fleet


@pytest.fixture(scope="session")
def azure_profile() -> FleetProfile:
    """The shipped azure_pdm profile; fails (never skips) when the data set is missing."""
    profile = load_profile(PROFILES / "azure_pdm.yaml")
    folder = source_folder(profile, PROFILES, Path("/nonexistent-landing"))
    missing = [f for f in AZURE_FILES if not (folder / f).is_file()]
    assert not missing, f"Azure PdM data set incomplete in {folder}: missing {missing}"
    return profile


@pytest.fixture(scope="session")
def azure_dir(azure_profile: FleetProfile) -> Path:
    return source_folder(azure_profile, PROFILES, Path("/nonexistent-landing"))


@pytest.fixture(scope="session")
def azure_assets(azure_profile: FleetProfile) -> list[dg.AssetsDefinition]:
    return [*ingestion_assets(FleetContext.of(azure_profile, PROFILES)), *features_assets(FleetContext.of(azure_profile, PROFILES))]


@pytest.fixture(scope="session")
def azure_days(azure_assets) -> list[str]:
    return next(a.partitions_def for a in azure_assets if a.partitions_def).get_partition_keys()


@pytest.fixture(scope="session")
def azure_backfill(tmp_path_factory, azure_assets, azure_days):
    """Every asset over every Azure day in one range run: (instance, result, lake root)."""
    root = tmp_path_factory.mktemp("azure")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        azure_assets,
        resources={"lake": LakeResource(root=str(root / "lake"), landing_root=str(root / "landing"))},
        tags={RANGE_START: azure_days[0], RANGE_END: azure_days[-1]},
        instance=instance,
        raise_on_error=False,
    )
    return instance, result, root / "lake"


@pytest.fixture
def azure_lake(azure_backfill, tmp_path: Path) -> Path:
    """A private copy of the backfilled lake (ingested tables only), for tests that write to it."""
    source = azure_backfill[2] / "azure_pdm"
    target = tmp_path / "azure_lake"
    for table in ("devices", "telemetry", "events"):
        shutil.copytree(source / table, target / "azure_pdm" / table)
    return target


PG_SERVER = os.environ.get("IOT_MLOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@contextmanager
def postgres_databases(*roles: str) -> Iterator[dict[str, str]]:
    """One new database per role on the local PostgreSQL server, dropped afterwards even on failure."""
    import psycopg2

    names = {role: f"iot_mlops_test_{role}_{uuid.uuid4().hex[:8]}" for role in roles}
    try:
        admin = psycopg2.connect(f"{PG_SERVER}/postgres", connect_timeout=10)
    except psycopg2.OperationalError as error:
        pytest.fail(f"these tests need the PostgreSQL server at {PG_SERVER} (IOT_MLOPS_TEST_PG); start it: {error}")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f'CREATE DATABASE "{name}"')
        yield {role: f"{PG_SERVER}/{name}" for role, name in names.items()}
    finally:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    with postgres_databases("db") as urls:
        yield urls["db"]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server for one test."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def azure_labelled(tmp_path_factory, azure_backfill, azure_profile) -> pipeline.AzureLabelled:
    return pipeline.azure_labelled(tmp_path_factory, azure_backfill[2], azure_profile)


@pytest.fixture(scope="session")
def azure_trained(tmp_path_factory, azure_labelled, azure_profile) -> pipeline.AzureTrained:
    return pipeline.azure_trained(tmp_path_factory, azure_labelled, azure_profile)
