"""scripts/walk_readme.py finds every command of the README, so a new one cannot escape the walk."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from iot_mlops_tests.test_cli import README, readme_commands

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "walk_readme.py"


def walker():
    spec = importlib.util.spec_from_file_location("walk_readme", SCRIPT)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_walk_extracts_every_iot_mlops_command():
    walk = walker()
    extracted = walk.extract(README.read_text())
    calls = {call for command in extracted for call in walk.invocations(command.text)}
    for command_line in readme_commands():
        # The README's output examples (the demo's last lines, `$ iot-mlops doctor`) count as the command they show.
        call = walk.invocations(command_line.removeprefix("$ "))[0]
        assert call in calls, f"the walk misses {command_line!r} (words and options {call})"


def test_walk_joins_continuations_heredocs_and_quoted_bodies():
    block = (
        "psql -h db.internal -U postgres <<'SQL'\nCREATE ROLE a;  # not a comment\nSQL\n"
        "# a comment\n"
        "curl -H \"$H\" $API/batch \\\n  -d '{\"items\": [1,\n 2]}'   # trailing comment\n"
        "dagster asset materialize -m m \\\n  --select 'a,b'\n"
    )
    commands = [text for _, text in walker().block_commands(block, 1)]
    assert commands == [
        "psql -h db.internal -U postgres <<'SQL'\nCREATE ROLE a;  # not a comment\nSQL",
        "curl -H \"$H\" $API/batch -d '{\"items\": [1,\n2]}'",
        "dagster asset materialize -m m --select 'a,b'",
    ]
