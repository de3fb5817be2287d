"""scripts/screenshots.py without a browser: its pages, its arguments, and what it says when Chromium is missing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshots.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("screenshots_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_shots_name_the_fleets_lineage_drift_sensor_daily_runs_and_assets(script):
    by_name = {s.name: s for s in script.shots("pumps", "loc")}
    assert len(by_name) == len(script.shots("pumps", "loc"))  # one PNG per shot
    assert by_name["asset_graph"].path == "/locations/__repository__@loc/asset-groups/pumps"
    assert by_name["drift_sensor"].path == "/locations/__repository__@loc/sensors/pumps_drift_sensor"
    sensor_runs = urlsplit(by_name["drift_sensor_runs"].path)
    assert sensor_runs.path == "/runs" and parse_qs(sensor_runs.query) == {"q[]": ["tag:dagster/sensor_name=pumps_drift_sensor"]}
    assert by_name["drift_sensor_runs"].wait_for == "pumps_retraining"
    runs = urlsplit(by_name["daily_job_runs"].path)
    assert runs.path == "/runs" and parse_qs(runs.query) == {"q[]": ["job:pumps_daily"]}
    drift = by_name["drift_share_plot"]
    assert unquote(urlsplit(drift.path).path) == "/assets/pumps/drift_report" and drift.click == "Plots"
    assert drift.scroll_to == "drift_share"
    assert urlsplit(by_name["failure_model"].path).path == "/assets/pumps/failure_model"
    assert all(s.wait_for for s in by_name.values())


def test_arguments_default_to_data_screenshots_and_parse_the_window_size(script):
    args = script.parse_args([])
    assert args.out == Path("data/screenshots") and args.fleet == "water_heaters" and args.url is None
    assert script.parse_args(["--size", "1280x720", "--out", "/tmp/x"]).window == (1280, 720)


@pytest.mark.parametrize("argv", [["--size", "wide"], ["--only", "asset_graph", "nothing_like_it"]])
def test_bad_arguments_are_refused(script, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        script.parse_args(argv)
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


def test_without_chromium_it_says_what_to_install_and_takes_nothing(script, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(script, "webdriver_module", lambda: None)  # selenium present or not: the browser is missing
    code = script.main(["--chromium", str(tmp_path / "no-chromium"), "--out", str(tmp_path / "shots")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Chromium not found" in err and "apt-get install chromium chromium-driver" in err
    assert not (tmp_path / "shots").exists()


def test_without_selenium_it_names_the_extra(script, monkeypatch):
    monkeypatch.setitem(sys.modules, "selenium", None)  # importing it raises ImportError
    with pytest.raises(script.MissingTool, match=r"\.\[screenshots\]"):
        script.webdriver_module()


def test_dagster_home_follows_the_cli(script, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert script.dagster_home(None) == tmp_path / "data" / "dagster_home"
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert script.dagster_home(None) == tmp_path
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    assert script.dagster_home(None) == tmp_path / "elsewhere"
    assert script.dagster_home(Path("given")) == tmp_path / "given"
