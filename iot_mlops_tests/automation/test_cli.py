"""The `iot-mlops` command's shared behaviour: one Dagster instance for every command, who acts."""

from __future__ import annotations

import os
import pwd
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
