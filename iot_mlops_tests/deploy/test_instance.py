"""The shipped dagster.yaml files work: embedded SQLite, and Postgres on the real local server."""

import shutil
from pathlib import Path

import dagster as dg
import psycopg2

from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake.resource import LakeResource
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import load_profile

ROOT = Path(__file__).resolve().parents[2]


def _materialize_one_partition(instance: dg.DagsterInstance, tmp_path: Path) -> dg.ExecuteInProcessResult:
    profile = load_profile(ROOT / "profiles" / "azure_pdm.yaml")
    devices, telemetry, _ = ingestion_assets(FleetContext.of(profile, ROOT / "profiles"))
    lake = LakeResource(root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))
    assert dg.materialize([devices], instance=instance, resources={"lake": lake}).success
    return dg.materialize([telemetry, devices], selection=[telemetry], partition_key="2015-01-05",
                          instance=instance, resources={"lake": lake})


def test_postgres_instance_records_materialization(postgres_url, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    monkeypatch.setenv("IOT_MLOPS_DAGSTER_DIR", str(tmp_path / "dagster_files"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = _materialize_one_partition(instance, tmp_path)
        assert result.success
        key = dg.AssetKey(["azure_pdm", "telemetry"])
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.dagster_event.partition == "2015-01-05"
        assert event.asset_materialization.metadata["rows_read"].value == 480
        assert instance.get_run_by_id(result.run_id).is_success
    # The rows are really in Postgres, not in a local file.
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs WHERE asset_key = %s", [key.to_string()])
        assert cur.fetchone()[0] >= 1


def test_embedded_instance_uses_sqlite_under_data(tmp_path, monkeypatch):
    home = tmp_path / "project"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.chdir(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert _materialize_one_partition(instance, tmp_path).success
        assert instance.get_latest_materialization_event(dg.AssetKey(["azure_pdm", "telemetry"])) is not None
    assert (home / "data" / "dagster" / "storage").is_dir()
