"""The `iot-mlops` command's shared behaviour: one Dagster instance for every command, who acts."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from iot_mlops.automation.cli import default_actor
from iot_mlops.cli import app

PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "water_heaters.yaml"


def test_every_command_uses_the_folders_instance_when_dagster_home_is_unset(tmp_path, monkeypatch):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(app, ["profiles", "validate", str(PROFILE)])
    assert result.exit_code == 0, result.output
    assert os.environ["DAGSTER_HOME"] == str(tmp_path)


def test_an_explicit_dagster_home_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dagster.yaml").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    assert CliRunner().invoke(app, ["profiles", "validate", str(PROFILE)]).exit_code == 0
    assert os.environ["DAGSTER_HOME"] == str(tmp_path / "elsewhere")


def test_the_default_actor_is_the_login_name_even_without_user_variables(monkeypatch):
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert default_actor() == f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    monkeypatch.setenv("USER", "alice")
    assert default_actor() == "cli:alice"


def run_decisions(tmp_path: Path, store_url: str) -> subprocess.CompletedProcess:
    """`iot-mlops decisions` in a fresh interpreter; prints which heavy libraries it imported."""
    script = ("import sys\nfrom iot_mlops.cli import app\ntry:\n    app(['decisions'])\nexcept SystemExit as e:\n"
              "    code = e.code\nprint('heavy:', sorted(m for m in ('mlflow', 'sklearn', 'skops', 'evidently') if m in sys.modules))\n"
              "sys.exit(code)")
    env = {**os.environ, "IOT_MLOPS_STORE_URL": store_url, "IOT_MLOPS_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_decisions_reads_the_log_without_loading_mlflow_or_scikit_learn(tmp_path):
    done = run_decisions(tmp_path, f"sqlite:///{tmp_path / 'ops.db'}")
    assert done.returncode == 0, done.stderr
    assert "no decisions recorded yet" in done.stdout and "heavy: []" in done.stdout


def test_an_unreachable_store_is_one_line_not_a_traceback(tmp_path):
    done = run_decisions(tmp_path, "postgresql://postgres@127.0.0.1:1/nowhere")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
