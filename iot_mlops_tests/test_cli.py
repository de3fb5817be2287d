"""The `iot-mlops` command's help: what a newcomer reads first."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from iot_mlops.cli import app


@pytest.fixture(autouse=True)
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The group callback would otherwise create data/dagster_home in the working directory.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))


def commands(group=None, prefix: tuple[str, ...] = ()):
    """Every leaf command's words, e.g. ("models", "rollback")."""
    group = group or get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_flags_take_no_value_in_help():
    runner = CliRunner()
    evaluate = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "120"})
    assert evaluate.exit_code == 0, evaluate.output
    assert "--json" in evaluate.output and "<bool>" not in evaluate.output
    for words in commands():
        output = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "120"}).output
        assert "--help" in output and "<bool>" not in output, words
