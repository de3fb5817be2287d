"""`iot-mlops models ...` through typer's CliRunner, against the stores configured by the environment."""

from __future__ import annotations

from typer.testing import CliRunner

from iot_mlops.cli import app
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.registry.lifecycle import promote, reject
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops_tests.registry.models import FLEET, NAME

runner = CliRunner()


def gate_all(registry: ModelRegistry, log: DecisionLog) -> None:
    promote(registry, log, fleet=FLEET, name=NAME, version="1", reason="first model", actor="sensor:gate")
    reject(registry, log, fleet=FLEET, name=NAME, version="2", reason="worse", actor="sensor:gate")
    promote(registry, log, fleet=FLEET, name=NAME, version="3", reason="better", actor="sensor:gate")


def test_list_on_an_empty_registry():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and result.output == "no registered models\n"


def test_list_shows_champion_and_challenger(populated: ModelRegistry, decision_log: DecisionLog):
    promote(populated, decision_log, fleet=FLEET, name=NAME, version="1", reason="first model", actor="sensor:gate")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    header, _, row = result.output.splitlines()
    assert header.split() == ["model", "champion", "challenger", "latest", "versions"]
    assert row.split() == [NAME, "1", "3", "3", "3"]


def test_history_and_rollback(populated: ModelRegistry, decision_log: DecisionLog, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    gate_all(populated, decision_log)
    result = runner.invoke(app, ["models", "rollback", NAME, "--reason", "false alarms"])
    assert result.exit_code == 0, result.output
    assert f"{NAME}: champion v3 -> v1" in result.output and "cli:alice" in result.output
    assert populated.alias_version(NAME, "champion") == "1"

    result = runner.invoke(app, ["models", "history", NAME])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:6] == ["when", "(UTC)", "fleet", "action", "from", "to"]
    assert [line.split()[3:6] for line in lines[2:]] == [
        ["promoted", "-", "1"], ["rejected", "1", "2"], ["promoted", "1", "3"], ["rollback", "3", "1"]]
    assert lines[-1].split()[-3:] == ["cli:alice", "false", "alarms"]


def test_rollback_errors_are_one_line_on_stderr(populated: ModelRegistry, decision_log: DecisionLog):
    result = runner.invoke(app, ["models", "rollback", NAME, "--actor", "ops:bob"])
    assert result.exit_code == 1
    assert result.stderr == f"error: model '{NAME}' has no champion to roll back from\n" and result.stdout == ""
    result = runner.invoke(app, ["models", "rollback", "unknown"])
    assert result.exit_code == 1 and "no registered model named 'unknown'" in result.stderr
    assert "Traceback" not in result.output
    assert decision_log.list() == []
    assert "no decisions recorded for unknown" in runner.invoke(app, ["models", "history", "unknown"]).output
