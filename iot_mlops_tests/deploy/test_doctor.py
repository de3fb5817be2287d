"""`iot-mlops doctor` passes a sound embedded or Postgres deployment, and names each problem of a broken one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg2
import pytest
import typer
from typer.testing import CliRunner

from iot_mlops.deploy.doctor import FAIL, OK, Context, check_dagster, check_mlflow, doctor
from iot_mlops.deploy.probes import database_of, mask
from iot_mlops.serving.auth import hash_key
from iot_mlops.settings import Settings
from iot_mlops_tests.conftest import PG_SERVER, postgres_databases

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ, MQTT = "pyamqp://guest:guest@127.0.0.1:5672//", "127.0.0.1:1883"
UNREACHABLE = "postgresql+psycopg2://dagster:s3cret@127.0.0.1:1/dagster"


def run_doctor(*args: str) -> tuple[int, dict[str, str]]:
    """Exit code and each check's line, by check name."""
    app = typer.Typer()
    app.command()(doctor)
    result = CliRunner().invoke(app, list(args))
    lines = {}
    for line in result.output.splitlines():
        status, _, rest = line.partition("  ")
        name, sep, _ = rest.strip().partition(": ")
        if sep and status.strip() in ("OK", "WARN", "FAIL", "SKIP"):
            lines[name] = line
    return result.exit_code, lines


def status(lines: dict[str, str], name: str) -> str:
    return lines[name].split()[0]


def production_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_url: str) -> Path:
    """deploy/dagster.yaml in the (isolated, empty) DAGSTER_HOME, its variables set."""
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_url)
    monkeypatch.setenv("IOT_MLOPS_DAGSTER_DIR", str(tmp_path / "dagster_files"))
    return home


def test_embedded_setup_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME")
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("IOT_MLOPS_API_KEYS", f"{hash_key('k1')}:admin:ops,{hash_key('k2')}:reader")
    code, lines = run_doctor()
    assert code == 0, "\n".join(lines.values())
    assert {status(lines, n) for n in lines} <= {OK, "WARN", "SKIP"}
    assert "sqlite storage" in lines["dagster instance"] and str(tmp_path) in lines["dagster instance"]
    assert status(lines, "dagster daemon") == "WARN" and "dagster-daemon run" in lines["dagster daemon"]
    assert "decisions, feedback, idempotency_keys, predictions" in lines["operational store"]
    assert status(lines, "API keys") == OK and "admin, reader" in lines["API keys"]
    assert status(lines, "RabbitMQ") == status(lines, "MQTT") == "SKIP"
    # The tables really exist now.
    assert (tmp_path / "data" / "operational.db").is_file() and (tmp_path / "data" / "mlflow" / "mlflow.db").is_file()


@pytest.mark.integration
def test_production_setup_on_postgres_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with postgres_databases("dagster", "store", "mlflow") as db:
        production_home(tmp_path, monkeypatch, db["dagster"].replace("postgresql://", "postgresql+psycopg2://"))
        # The project names the psycopg2 driver itself for the store and MLflow: both spellings work.
        monkeypatch.setenv("IOT_MLOPS_STORE_URL", db["store"])
        monkeypatch.setenv("IOT_MLOPS_MLFLOW_TRACKING_URI", db["mlflow"].replace("postgresql://", "postgresql+psycopg2://"))
        code, lines = run_doctor("--celery-broker", RABBITMQ, "--mqtt", MQTT)
        assert code == 0, "\n".join(lines.values())
        assert "postgres storage (PostgresRunStorage), QueuedRunCoordinator (max 4 runs, 3 tag limits)" in lines["dagster instance"]
        assert status(lines, "operational store") == status(lines, "MLflow tracking") == OK
        assert status(lines, "RabbitMQ") == status(lines, "MQTT") == OK and "guest:***@" in lines["RabbitMQ"]
        with psycopg2.connect(db["store"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('decisions', 'predictions', 'feedback')")
            assert cur.fetchone()[0] == 3
        with psycopg2.connect(db["mlflow"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM experiments")
            assert cur.fetchone()[0] >= 1


def test_broken_setup_names_each_problem_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    production_home(tmp_path, monkeypatch, UNREACHABLE)
    (tmp_path / "not_a_folder").write_text("a file where the lake should be")
    monkeypatch.setenv("IOT_MLOPS_LAKE_DIR", str(tmp_path / "not_a_folder" / "lake"))
    monkeypatch.setenv("IOT_MLOPS_STORE_URL", "postgres://iot:pw@127.0.0.1:5432/iot")
    monkeypatch.setenv("IOT_MLOPS_API_KEYS", "not-a-hash:admin")
    code, lines = run_doctor("--mqtt", "127.0.0.1:1")
    assert code == 1
    dagster = lines["dagster instance"]
    assert status(lines, "dagster instance") == FAIL and "127.0.0.1:1" in dagster and "Connection refused" in dagster
    assert "s3cret" not in dagster and "dagster:***@" in dagster and "DAGSTER_PG_URL" in dagster
    assert status(lines, "lake") == FAIL and "not_a_folder is a file" in lines["lake"] and "IOT_MLOPS_LAKE_DIR" in lines["lake"]
    assert status(lines, "landing") == OK
    assert status(lines, "operational store") == FAIL and "postgresql+psycopg2://" in lines["operational store"]
    assert status(lines, "API keys") == FAIL and "entry 1" in lines["API keys"]
    assert status(lines, "MQTT") == FAIL and "cannot reach the MQTT broker at 127.0.0.1:1" in lines["MQTT"]
    assert status(lines, "RabbitMQ") == "SKIP"


@pytest.mark.parametrize("text, expected", [
    ("storage: [unclosed\n", "is not valid YAML"),
    ("storage:\n  sqlite:\n    base_dir: dagster\nrun_coordinater: {}\n", "is not a valid instance configuration"),
    ("storage:\n  postgres:\n    postgres_url: {env: IOT_MLOPS_TEST_UNSET_PG_URL}\n", "reads IOT_MLOPS_TEST_UNSET_PG_URL from the environment, not set"),
])
def test_bad_dagster_yaml_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str):
    home = production_home(tmp_path, monkeypatch, UNREACHABLE)
    (home / "dagster.yaml").write_text(text)
    [check] = check_dagster(Context(settings=Settings()))
    assert check.status == FAIL and expected in check.detail and str(home / "dagster.yaml") in check.detail
    assert check.fix


def test_mlflow_sharing_dagsters_database_fails():
    url = f"{PG_SERVER}/dagster_and_mlflow"
    [check] = check_mlflow(Context(settings=Settings(mlflow_tracking_uri=url), dagster_db=database_of(url)))
    assert (check.name, check.status) == ("MLflow tracking", FAIL) and "share one database" in check.detail
    assert "IOT_MLOPS_MLFLOW_TRACKING_URI" in check.fix


def test_passwords_are_masked():
    assert mask("postgresql+psycopg2://u:p%40ss:w0rd@h:5432/db") == "postgresql+psycopg2://u:***@h:5432/db"
    assert mask("pyamqp://guest@h//") == "pyamqp://guest@h//"


@pytest.mark.integration
def test_doctor_never_prints_a_password(monkeypatch: pytest.MonkeyPatch):
    password = "PLANTED-s3cret"
    with postgres_databases("store", "mlflow") as db:
        planted = {role: url.replace("postgresql://postgres@", f"postgresql+psycopg2://postgres:{password}@")
                   for role, url in db.items()}
        assert all(password in url for url in planted.values())  # the server is at PG_SERVER as user postgres
        monkeypatch.setenv("IOT_MLOPS_STORE_URL", planted["store"])
        monkeypatch.setenv("IOT_MLOPS_MLFLOW_TRACKING_URI", planted["mlflow"])
        _, sound = run_doctor()
        monkeypatch.setenv("IOT_MLOPS_STORE_URL", planted["store"] + "_missing")
        monkeypatch.setenv("IOT_MLOPS_MLFLOW_TRACKING_URI", f"http://iot:{password}@127.0.0.1:1")
        _, broken = run_doctor()
    assert status(sound, "operational store") == status(sound, "MLflow tracking") == OK
    assert "postgres:***@" in sound["operational store"] and "postgres:***@" in sound["MLflow tracking"]
    assert status(broken, "operational store") == status(broken, "MLflow tracking") == FAIL
    assert "does not exist" in broken["operational store"] and "iot:***@127.0.0.1:1" in broken["MLflow tracking"]
    assert [line for line in [*sound.values(), *broken.values()] if password in line] == []
