"""A password in the store URL or the MLflow tracking URI never reaches Dagster's config, run storage or event log."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.registry.resource import RegistryResource
from iot_mlops_tests.conftest import postgres_databases

PASSWORD = "PLANTED-s3cret"
ROLLBACK = dg.RunConfig(ops={"rollback_champion": {"config": {"fleet": "water_heaters", "reason": "test",
                                                              "model_name": "water_heaters_component_failure"}}})


def with_password(url: str, scheme: str = "postgresql+psycopg2") -> str:
    return make_url(url).set(drivername=scheme, password=PASSWORD).render_as_string(hide_password=False)


def texts_in(home: Path) -> list[tuple[str, bytes]]:
    """Every file under `home` as bytes, and every value of every table of its SQLite files (zlib blobs inflated)."""
    out = []
    for file in sorted(p for p in home.rglob("*") if p.is_file()):
        out.append((str(file), file.read_bytes()))
        if file.suffix != ".db":
            continue
        with sqlite3.connect(file) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    for value in row:
                        if isinstance(value, bytes):
                            try:
                                value = zlib.decompress(value)  # Dagster stores run and job snapshots compressed
                            except zlib.error:
                                pass
                        if isinstance(value, str | bytes):
                            out.append((f"{file}:{table}", value if isinstance(value, bytes) else value.encode()))
    return out


def run_texts(instance: dg.DagsterInstance) -> list[str]:
    """Each run's config and tags and each of its event log entries, serialized."""
    out = []
    for run in instance.get_runs():
        out += [dg.serialize_value(run.run_config) if isinstance(run.run_config, dict) else repr(run.run_config),
                repr(run.tags)]
        out += [dg.serialize_value(entry) for entry in instance.all_logs(run.run_id)]
    return out


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failure.step_failure_data.error.to_string()


@pytest.mark.integration
def test_planted_passwords_never_reach_run_storage_or_the_event_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from iot_mlops.definitions import build_definitions

    home = tmp_path / "dagster_home"
    home.mkdir()
    with postgres_databases("store", "mlflow") as db, dg.instance_for_test(temp_dir=str(home)) as instance:
        monkeypatch.setenv("IOT_MLOPS_STORE_URL", with_password(db["store"]))
        monkeypatch.setenv("IOT_MLOPS_MLFLOW_TRACKING_URI", with_password(db["mlflow"]))
        defs = build_definitions()

        # Both resources really reach the planted-password databases: feedback from the store, the registry from MLflow.
        asset = defs.resolve_assets_def(dg.AssetKey(["water_heaters", "feedback_summary"]))
        summary = dg.materialize([asset], partition_key=asset.partitions_def.get_last_partition_key(),
                                 instance=instance)  # with the resources of the definitions
        assert summary.success
        rollback = defs.resolve_job_def("rollback_model").execute_in_process(run_config=ROLLBACK, instance=instance,
                                                                           raise_on_error=False)
        assert not rollback.success and "no registered model named 'water_heaters_component_failure'" in step_failure(rollback)

        # A Heroku-style postgres:// URI, which MLflow rejects quoting the whole URI in its error.
        monkeypatch.setenv("IOT_MLOPS_MLFLOW_TRACKING_URI", with_password(db["mlflow"], "postgres"))
        rejected = build_definitions().resolve_job_def("rollback_model").execute_in_process(
            run_config=ROLLBACK, instance=instance, raise_on_error=False)
        assert not rejected.success

        assert len(instance.get_runs()) == 3
        leaks = [text[:200] for text in run_texts(instance) if PASSWORD in text]
        stored = texts_in(home)
    assert any(b"IOT_MLOPS_STORE_URL" in value for where, value in stored if where.endswith(":snapshots"))
    assert leaks == [] and [where for where, value in stored if PASSWORD.encode() in value] == []
    assert "unsupported URI 'postgres://postgres:***@" in step_failure(rejected)  # the error still names the URI


def test_resources_name_the_variables_not_their_values(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IOT_MLOPS_STORE_URL", f"postgresql+psycopg2://iot:{PASSWORD}@db:5432/iot")
    monkeypatch.setenv("IOT_MLOPS_MLFLOW_TRACKING_URI", f"http://iot:{PASSWORD}@mlflow:5000")
    registry, store = RegistryResource.from_settings(), StoreResource.from_settings()
    assert (registry.tracking_uri.env_var_name, registry.store_url.env_var_name, store.url.env_var_name) == (
        "IOT_MLOPS_MLFLOW_TRACKING_URI", "IOT_MLOPS_STORE_URL", "IOT_MLOPS_STORE_URL")
    # Used outside a run (CLIs, the demo), the resources read the variables themselves.
    assert registry.resolved_tracking_uri() == f"http://iot:{PASSWORD}@mlflow:5000"
    assert store.resolved_url() == registry.resolved_store_url() == f"postgresql+psycopg2://iot:{PASSWORD}@db:5432/iot"


def test_an_unset_variable_leaves_the_embedded_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("IOT_MLOPS_STORE_URL", raising=False)
    monkeypatch.delenv("IOT_MLOPS_MLFLOW_TRACKING_URI", raising=False)
    registry, store = RegistryResource.from_settings(), StoreResource.from_settings()
    assert registry.tracking_uri is None and registry.store_url is None and store.url is None
    assert store.resolved_url() == registry.resolved_store_url() == f"sqlite:///{tmp_path / 'data' / 'operational.db'}"
    assert registry.resolved_tracking_uri() == f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}"


def test_errors_lose_the_password_and_keep_the_rest():
    from iot_mlops.secrets import hide_password, redact, scrub

    url = f"postgresql+psycopg2://iot:{PASSWORD}@db.internal:5432/iot"
    assert hide_password(url) == "postgresql+psycopg2://iot:***@db.internal:5432/iot"
    assert hide_password("sqlite:////data/operational.db") == "sqlite:////data/operational.db"
    assert hide_password(f"postgresql://iot:{PASSWORD}@db:notaport/iot") == "postgresql://iot:***@db:notaport/iot"
    assert redact(f"dsn password={PASSWORD} at {url}", url) == f"dsn password=*** at {hide_password(url)}"
    try:
        try:
            raise OSError(f"cannot reach {url}")
        except OSError as cause:
            raise ValueError("store failed", url) from cause
    except ValueError as error:
        clean = scrub(error, url)
    assert clean.args == ("store failed", hide_password(url))
    assert str(clean.__cause__) == f"cannot reach {hide_password(url)}"
