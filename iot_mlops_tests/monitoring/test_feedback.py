"""Feedback: the CLI, the summary figures, and the feedback_summary[day] asset on the synthetic fleet."""

from __future__ import annotations

import math
from datetime import datetime

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring import feedback as fbs
from iot_mlops.monitoring.cli import feedback_app
from iot_mlops.monitoring.feedback_assets import monitoring_assets
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.opstore.feedback import FeedbackStore
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.partitions import FleetContext
from iot_mlops.settings import get_settings
from iot_mlops_tests.fleet import DAYS, Fleet, materializations, stamp
from iot_mlops_tests.opstore.test_store import prediction_frame

D0, D1, D2, D3 = DAYS
runner = CliRunner()
app = typer.Typer()
app.add_typer(feedback_app, name="feedback")  # as iot_mlops/cli.py mounts it


def test_cli_adds_and_lists_feedback():
    PredictionLog(get_settings().store).record_batch("wh", prediction_frame(6))  # p0, p3 alert
    result = runner.invoke(app, ["feedback", "add", "p0", "--type", "false_positive", "--rating", "2", "--comment", "no fault found"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "1\n"
    result = runner.invoke(app, ["feedback", "add", "p1", "--type", "false_negative", "--rating", "1", "--component", "valve",
                                 "--failed-at", "2026-01-01T08:30:00+01:00", "--source", "app"])
    assert result.exit_code == 0 and result.stdout == "2\n"
    [first, second] = FeedbackStore(get_settings().store).list()
    assert (first.type, first.rating, first.comment, first.source) == ("false_positive", 2, "no fault found", "technician")
    assert (second.outcome_component, second.outcome_at, second.source) == ("valve", datetime(2026, 1, 1, 7, 30), "app")

    result = runner.invoke(app, ["feedback", "list", "--fleet", "wh", "--limit", "1"])
    assert result.exit_code == 0
    header, _, row = result.stdout.splitlines()
    assert header.split()[:3] == ["id", "received", "(UTC)"]
    assert row.split()[0] == "2" and "false_negative" in row and "valve@2026-01-01" in row
    assert runner.invoke(app, ["feedback", "list", "--fleet", "other"]).stdout == "no feedback recorded\n"


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "--type", "correct", "--rating", "3"], "error: unknown prediction id 'nope'"),
    (["p0", "--type", "correct", "--rating", "7"], "error: invalid feedback: rating: Input should be less than or equal to 5"),
    (["p0", "--type", "great", "--rating", "3"], "error: invalid feedback: type: Input should be"),
    (["p0", "--type", "correct", "--rating", "3", "--source", "email"], "error: invalid feedback: source: Input should be"),
    (["p0", "--type", "correct", "--rating", "3", "--component", "pump"], "error: outcome component 'pump' is not a component"),
    (["p0", "--type", "correct", "--rating", "3", "--component", "valve", "--failed-at", "last tuesday"],
     "error: --failed-at 'last tuesday' is not an ISO 8601 time"),
    (["p1", "--type", "false_positive", "--rating", "3"], "error: prediction p1 raised no alert"),
])
def test_cli_refuses_invalid_feedback_with_exit_code_1(args, message):
    PredictionLog(get_settings().store).record_batch("wh", prediction_frame(6))
    result = runner.invoke(app, ["feedback", "add", *args])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert FeedbackStore(get_settings().store).list() == []


def test_standardized_mean_difference_ranks_the_feature_that_differs():
    fp = pd.DataFrame({"a": [1.0, 3.0], "b": [5.0, 5.1], "flat": [2.0, 2.0], "label": ["x", "y"]})
    ok = pd.DataFrame({"a": [5.0, 7.0], "b": [5.0, 5.1], "flat": [2.0, 2.0], "label": ["x", "y"]})
    [first, second] = fbs.standardized_differences(fp, ok)
    assert first["feature"] == "a" and first["smd"] == pytest.approx(-4 / math.sqrt(2))
    assert (first["fp_mean"], first["correct_mean"]) == (2.0, 6.0)
    assert second == {"feature": "b", "smd": 0.0, "fp_mean": pytest.approx(5.05), "correct_mean": pytest.approx(5.05)}
    assert fbs.standardized_differences(fp.head(1), ok) == []  # one false positive says nothing about spread


# (device, day, hour, alert component or None)
PREDICTIONS = [("d1", D1, h, "impeller") for h in (1, 2, 3, 4)] + [("d2", D1, h, "impeller") for h in (1, 2, 3)] + [
    ("d1", D1, 10, "seal"), ("d3", D2, 5, "seal"), ("d3", D1, 0, None), ("d2", D1, 4, None)]
# (device, day, hour, type, rating, received)
FEEDBACK = [
    ("d1", D1, 1, "false_positive", 1, stamp(D1, 12)), ("d2", D1, 1, "correct", 3, stamp(D1, 12)),
    ("d1", D1, 2, "false_positive", 2, stamp(D2, 9)), ("d1", D1, 3, "false_positive", 1, stamp(D2, 9)),
    ("d3", D2, 5, "false_positive", 2, stamp(D2, 9)), ("d2", D1, 2, "correct", 4, stamp(D2, 9)),
    ("d2", D1, 3, "correct", 5, stamp(D2, 9)), ("d1", D1, 10, "correct", 4, stamp(D2, 9)),
    ("d3", D1, 0, "false_negative", 3, stamp(D2, 9)), ("d2", D1, 4, "unclear", 3, stamp(D2, 23, 59)),
    ("d1", D1, 4, "false_positive", 1, stamp(D3, 0)),  # received after D2: in no view of D2
]
MODELS = {"d1": "m0", "d2": "m1", "d3": "m0"}  # as Fleet.write_clean writes the devices table


def stored_predictions() -> pd.DataFrame:
    rows = [{"prediction_id": f"{d}-{day}-{h}", "device_id": d, "ts": stamp(day, h), "model_name": "tiny_component_failure",
             "model_version": "1", "p_impeller": 0.9 if c == "impeller" else 0.1, "p_seal": 0.9 if c == "seal" else 0.1,
             "predicted_component": c or "none"} for d, day, h, c in PREDICTIONS]
    return pd.DataFrame(rows)


def reference_smd(fleet: Fleet, fp: list[tuple], ok: list[tuple]) -> pd.Series:
    """|SMD| by plain pandas over the feature rows of the false-positive and correct alerts."""
    feats = pd.concat([fleet.read("features", D1), fleet.read("features", D2)]).set_index(["device_id", "ts"])
    numeric = feats.select_dtypes("number").columns
    a, b = feats.loc[[(d, stamp(day, h)) for d, day, h in fp], numeric], feats.loc[[(d, stamp(day, h)) for d, day, h in ok], numeric]
    smd = (a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)
    return smd[np.isfinite(smd)]


def test_feedback_summary_asset_on_the_synthetic_fleet(fleet: Fleet, tmp_path):
    assert fleet.materialize("devices", "telemetry", "events", "features", days=(D0, D3)).success
    store = StoreResource(url=f"sqlite:///{tmp_path / 'ops' / 'operational.db'}")
    store.predictions().record_batch(fleet.name, stored_predictions())
    feedback = store.feedback()
    for d, day, h, kind, rating, received in FEEDBACK:
        feedback.add(f"{d}-{day}-{h}", {"type": kind, "rating": rating, "source": "technician"}, received_at=received)

    profile = fleet.profile()
    [asset] = [a for a in monitoring_assets(FleetContext.of(profile, fleet.profile_dir)) if a.key.path[-1] == fbs.TABLE]
    lake = LakeResource(root=str(fleet.lake_root), landing_root=str(fleet.landing_root))
    result = dg.materialize([asset], partition_key=D2.isoformat(), resources={"lake": lake, "store": store},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = materializations(result)[(fbs.TABLE, D2.isoformat())]
    assert meta["feedback"] == 8 and meta["cumulative_feedback"] == 10
    assert isinstance(meta["false_positive_rate"], float) and meta["false_positive_rate"] == pytest.approx(3 / 6)
    assert meta["cumulative_false_positive_rate"] == pytest.approx(4 / 8)
    assert meta["mean_rating"] == pytest.approx((2 + 1 + 2 + 4 + 5 + 4 + 3 + 3) / 8)
    assert meta["by_type"] == {"false_positive": 3, "false_negative": 1, "correct": 3, "unclear": 1}

    day, cumulative = meta["summary"]["day"], meta["summary"]["cumulative"]
    # m0 = d1 and d3: false positives d1@2, d1@3, d3@5 against one correct alert (d1@10); m1 = d2: two correct.
    assert day["by_device_model"] == {"m0": {"false_positives": 3, "correct": 1, "false_positive_rate": 0.75},
                                      "m1": {"false_positives": 0, "correct": 2, "false_positive_rate": 0.0}}
    assert day["by_component"] == {"impeller": {"false_positives": 2, "correct": 2, "false_positive_rate": 0.5},
                                   "seal": {"false_positives": 1, "correct": 1, "false_positive_rate": 0.5}}
    assert day["repeated_fp_devices"] == {"d1": 2} and cumulative["repeated_fp_devices"] == {"d1": 3}
    assert cumulative["mean_rating"] == pytest.approx((24 + 1 + 3) / 10)

    fp_keys = [("d1", D1, 1), ("d1", D1, 2), ("d1", D1, 3), ("d3", D2, 5)]
    ok_keys = [("d2", D1, 1), ("d2", D1, 2), ("d2", D1, 3), ("d1", D1, 10)]
    expected = reference_smd(fleet, fp_keys, ok_keys)
    got = cumulative["fp_features"]
    assert len(got) == 5
    assert [abs(f["smd"]) for f in got] == pytest.approx(sorted(expected.abs(), reverse=True)[:5])
    for f in got:
        assert f["smd"] == pytest.approx(expected[f["feature"]])

    written = pd.read_parquet(fleet.lake.partition_file(fleet.name, fbs.TABLE, D2))
    overall = written[(written["breakdown"] == "overall")].set_index("view")
    assert overall.loc["day", "false_positive_rate"] == pytest.approx(0.5) and overall.loc["cumulative", "feedback"] == 10
    assert set(written.loc[written["breakdown"] == "fp_feature", "key"]) >= {f["feature"] for f in got}
    models = written[(written["view"] == "day") & (written["breakdown"] == "device_model")].set_index("key")
    assert models.loc["m0", "false_positive_rate"] == 0.75 and MODELS["d3"] == "m0"


def test_a_day_without_feedback_writes_an_empty_summary(fleet: Fleet, tmp_path):
    profile = fleet.profile()
    [asset] = [a for a in monitoring_assets(FleetContext.of(profile, fleet.profile_dir)) if a.key.path[-1] == fbs.TABLE]
    lake = LakeResource(root=str(fleet.lake_root), landing_root=str(fleet.landing_root))
    store = StoreResource(url=f"sqlite:///{tmp_path / 'empty.db'}")
    result = dg.materialize([asset], partition_key=D1.isoformat(), resources={"lake": lake, "store": store},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = materializations(result)[(fbs.TABLE, D1.isoformat())]
    assert meta["feedback"] == 0 and math.isnan(meta["false_positive_rate"])
    written = pd.read_parquet(fleet.lake.partition_file(fleet.name, fbs.TABLE, D1))
    assert set(written["view"]) == {"day", "cumulative"} and written["feedback"].sum() == 0


def test_summarize_counts_only_alerts_in_the_false_positive_rate():
    fb = pd.DataFrame({
        "type": ["false_positive", "correct", "correct", "false_negative"], "rating": [1, 5, 4, 2],
        "device_id": ["a", "a", "b", "c"], "ts": pd.to_datetime(["2026-01-01"] * 4),
        "predicted_component": ["valve", "valve", "none", "none"], "device_model": ["X", "X", "Y", "Y"],
    })
    s = fbs.summarize(fb)
    assert (s.feedback, s.false_positives, s.correct_alerts, s.false_positive_rate) == (4, 1, 1, 0.5)
    assert s.by_device_model == {"X": {"false_positives": 1, "correct": 1, "false_positive_rate": 0.5}}
    assert s.mean_rating == 3.0 and s.repeated_fp_devices == {} and s.fp_features == []
    assert fbs.summarize(fb.iloc[:0]).feedback == 0 and math.isnan(fbs.summarize(fb.iloc[:0]).false_positive_rate)
