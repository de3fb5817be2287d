"""Quality bar on the real Azure PdM slice: `iot-mlops evaluate --fleet azure_pdm --json` beats the reference recipe."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from iot_mlops.cli import app
from iot_mlops.profiles.schema_types import format_duration

MIN_MACRO_F1 = 0.93
MIN_RECALL = 0.90


@pytest.mark.slow
def test_evaluate_beats_the_reference_recipe_on_the_readme_split(azure_profile):
    # azure_profile fails (never skips) when the data set is missing; the command ingests it into tmp_path.
    result = CliRunner().invoke(app, ["evaluate", "--fleet", "azure_pdm", "--json", "--search-iterations", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(result.output.strip().splitlines()[-1])

    assert summary["split"] == {"train_end": "2015-02-28", "test_start": "2015-03-01"}
    assert summary["macro_f1"] >= MIN_MACRO_F1
    assert set(summary["per_class"]) == set(azure_profile.components)
    assert all(m["recall"] >= MIN_RECALL for m in summary["per_class"].values()), summary["per_class"]
    assert summary["macro_f1"] > summary["reference_macro_f1"]
    assert summary["algorithm"] == azure_profile.training.algorithm
    assert summary["rows"]["train"] > 0 and summary["rows"]["test"] > 0
    # The plain baseline on the same rows: its figures in the JSON and the table; ours is ahead of it too.
    baseline = summary["baseline"]
    assert set(baseline["per_class"]) == set(azure_profile.components) and 0 <= baseline["event_recall"] <= 1
    assert summary["macro_f1"] > baseline["macro_f1"]
    assert "baseline F1" in result.output and "events (baseline):" in result.output


def test_evaluate_a_fleet_without_reference_split_uses_a_time_split_and_fails_in_one_line(fleet, monkeypatch):
    monkeypatch.setenv("IOT_MLOPS_PROFILES_DIR", str(fleet.profile_dir))
    assert not fleet.profile().training.reference_splits
    result = CliRunner().invoke(app, ["evaluate", "--fleet", fleet.name, "--search-iterations", "1"])
    # The synthetic fleet's three days are too short for a time split with horizon gaps: an error the user can act on.
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert "dataset: time split" in result.output and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: {fleet.name}: 3.0 days of labelled data are too short for a time split with "
        f"{format_duration(fleet.profile().target.horizon)} gaps")


def test_evaluate_an_unknown_fleet_is_a_one_line_error():
    result = CliRunner().invoke(app, ["evaluate", "--fleet", "no_such_fleet"])
    assert result.exit_code == 1 and result.output.startswith("error: no fleet 'no_such_fleet'")
