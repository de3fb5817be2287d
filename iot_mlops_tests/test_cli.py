"""The `iot-mlops` command as a newcomer meets it: its help, and the commands the README shows."""

from __future__ import annotations

import re
import shlex
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


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """Every `iot-mlops ...` command of the README: code block lines (continued by `\\`) and inline code spans."""
    text = README.read_text()
    fence = re.compile(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", flags=re.S | re.M)
    found = []
    for block in fence.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0]
            if "iot-mlops " in line and not line.lstrip().startswith("#"):
                found.append("iot-mlops " + line.split("iot-mlops ", 1)[1].split("`")[0])
    found += re.findall(r"`(iot-mlops [^`]+)`", fence.sub("", text))
    return [" ".join(c.split()) for c in found]


def parse(command_line: str) -> None:
    """Parse a command line as `iot-mlops` would (names, flags, values, types), without running it."""
    words = shlex.split(command_line.replace("[", "").replace("]", ""))[1:]
    command = get_command(app)
    while hasattr(command, "commands"):
        assert words and words[0] in command.commands, f"no command {words[:1]} in {sorted(command.commands)}"
        command, words = command.commands[words[0]], words[1:]
    command.make_context(command.name, words)


def test_readme_commands_parse():
    commands = readme_commands()
    assert len(commands) > 20 and any(c.startswith("iot-mlops evaluate") for c in commands)
    for command_line in commands:
        try:
            parse(command_line)
        except Exception as error:  # a usage error names the unknown command or option, or the bad or missing value
            pytest.fail(f"{command_line}: {getattr(error, 'format_message', error.__str__)()}")
