"""Runs on the project's instances print INFO to the console, not a DEBUG line per step event."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@dg.asset
def tiny(context) -> int:
    context.log.info("tiny asset computed")
    return 1


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The embedded instance of dagster.yaml, in a temp folder (its paths are relative to the working directory)."""
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def test_a_run_without_logger_config_prints_info_and_stores_every_event(instance, capfd):
    result = dg.materialize([tiny], instance=instance)
    console = capfd.readouterr().err
    assert result.success
    assert "tiny asset computed" in console and " - INFO - " in console
    assert " - DEBUG - " not in console
    events = {r.dagster_event.event_type_value for r in instance.all_logs(result.run_id) if r.is_dagster_event}
    assert {"STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION"} <= events


@pytest.mark.parametrize("level, debug_shown, info_shown", [("DEBUG", True, True), ("WARNING", False, False)])
def test_run_config_still_sets_the_console_level(instance, capfd, level, debug_shown, info_shown):
    config = {"loggers": {"console": {"config": {"log_level": level}}}}
    assert dg.materialize([tiny], instance=instance, run_config=config).success
    console = capfd.readouterr().err
    assert (" - DEBUG - " in console) == debug_shown and ("tiny asset computed" in console) == info_shown


def test_the_production_instance_logs_info_too():
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert config["python_logs"] == {"python_log_level": "INFO"}
