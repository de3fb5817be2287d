"""Live model performance over matured predictions: built predictions and events with known outcomes."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from iot_mlops.lake import Lake, connect
from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring import performance as perf
from iot_mlops.monitoring.feedback_assets import monitoring_assets
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import FleetProfile
from iot_mlops_tests.fleet import DAYS, Fleet, materializations, stamp

HORIZON = timedelta(hours=6)
D0, D1, D2, D3 = DAYS
COMPONENTS = ["impeller", "seal"]
# (device, component) alerts by day and hour, and the failures (device, time, component).
ALERTS = {D0: {("d1", 6): "impeller", ("d1", 7): "impeller", ("d2", 15): "impeller", ("d2", 21): "seal", ("d2", 22): "seal"},
          D1: {("d1", 10): "seal"}}
VERSIONS = {D0: "1", D1: "2"}
FAILURES = [("d1", stamp(D0, 10), "impeller"), ("d2", stamp(D1, 2), "seal"), ("d1", stamp(D1, 20), "seal")]


def prediction_rows(day: date, version: str, alerts: dict) -> pd.DataFrame:
    """Hourly predictions of d1 and d2, shaped like the predictions partition."""
    rows = []
    for device in ("d1", "d2"):
        for hour in range(24):
            comp = alerts.get((device, hour))
            row = {"prediction_id": f"{device}-{day}-{hour}-{version}", "device_id": device, "ts": stamp(day, hour),
                   "model_name": "tiny_component_failure", "model_version": version}
            for c in COMPONENTS:
                row |= {f"p_{c}": 0.9 if comp == c else 0.1, f"alert_{c}": int(comp == c)}
            rows.append(row | {"predicted_component": comp or "none", "anomaly_score": np.nan, "anomaly_model_version": None})
    frame = pd.DataFrame(rows)
    frame["ts"] = frame["ts"].astype("datetime64[us]")
    return frame


def write_events(lake: Lake, fleet: str, days: list[date], failures=FAILURES) -> None:
    """Events partitions for the days: the failures, plus maintenance and errors that must not count as outcomes."""
    rows = [(d, ts, "failure", c) for d, ts, c in failures]
    rows += [("d2", stamp(D0, 16), "maintenance", "impeller"), ("d1", stamp(D0, 8), "error", "E1")]
    frame = pd.DataFrame(rows, columns=["device_id", "ts", "kind", "value"]).astype(
        {"device_id": "string", "ts": "datetime64[us]", "kind": "string", "value": "string"})
    for day in days:
        file = lake.partition_file(fleet, "events", day)
        file.parent.mkdir(parents=True, exist_ok=True)
        frame[frame["ts"].dt.date == day].to_parquet(file, index=False)


@pytest.fixture
def built(tmp_path: Path) -> tuple[FleetProfile, Fleet]:
    """The synthetic fleet's profile (6 h horizon) with two days of predictions and four days of events."""
    fleet = Fleet(tmp_path / "fleet", tmp_path / "data" / "lake", tmp_path / "data" / "landing")
    fleet.spec["target"] = {"horizon": "6h"}
    profile = fleet.write_profile()
    for day, version in VERSIONS.items():
        file = fleet.lake.partition_file(fleet.name, "predictions", day)
        file.parent.mkdir(parents=True)
        prediction_rows(day, version, ALERTS[day]).to_parquet(file, index=False)
    write_events(fleet.lake, fleet.name, DAYS)
    return profile, fleet


def reference(day: date, events_until: datetime) -> dict[str, dict]:
    """Figures per version by brute force: label = failure of the component in [ts, ts + horizon)."""
    cutoff = min(datetime.combine(day + timedelta(days=1), datetime.min.time()), events_until)
    out = {}
    for pday, version in VERSIONS.items():
        if pday > day:
            continue
        frame = prediction_rows(pday, version, ALERTS[pday])
        tp = fp = fn = pending = 0
        matured = []
        for r in frame.itertuples():
            if r.ts + HORIZON > cutoff:
                pending += 1
                continue
            matured.append(r)
            for c in COMPONENTS:
                truth = any(d == r.device_id and cc == c and r.ts <= f < r.ts + HORIZON for d, f, cc in FAILURES)
                alert = getattr(r, f"alert_{c}") == 1
                tp, fp, fn = tp + (truth and alert), fp + (alert and not truth), fn + (truth and not alert)
        start, end = min(r.ts for r in matured), max(r.ts for r in matured)
        scope = [(d, f, c) for d, f, c in FAILURES if start + HORIZON <= f <= end]
        caught = [1 for d, f, c in scope if any(r.device_id == d and getattr(r, f"alert_{c}") and f - HORIZON < r.ts <= f
                                                for r in matured)]
        out[version] = {"tp": tp, "fp": fp, "fn": fn, "pending": pending, "matured": len(matured), "failures": len(scope),
                        "event_recall": len(caught) / len(scope) if scope else math.nan}
    return out


def overall(table: pd.DataFrame, version: str) -> pd.Series:
    return table[(table["model_version"] == version) & (table["scope"] == perf.OVERALL)].iloc[0]


def figures(profile: FleetProfile, fleet: Fleet, day: date) -> pd.DataFrame:
    with connect() as con:
        return perf.compute_performance(con, fleet.lake, profile, day)


def test_immature_predictions_are_excluded_until_their_horizon_has_passed(built):
    profile, fleet = built
    d0 = figures(profile, fleet, D0)
    v1 = overall(d0, "1")
    # On D0, predictions after 18:00 wait for outcomes (10 rows); the alerts for the seal failing at D1 02:00
    # are among them: judged on D0's events alone they would be false positives.
    assert (v1["matured"], v1["pending"]) == (38, 10)
    assert (v1["tp"], v1["fp"], v1["fn"]) == (2, 1, 4)
    assert v1["precision"] == pytest.approx(2 / 3) and v1["recall"] == pytest.approx(2 / 6)
    assert set(d0["model_version"]) == {"1"} and bool(v1["current"])

    d1 = figures(profile, fleet, D1)
    v1, v2 = overall(d1, "1"), overall(d1, "2")
    assert (v1["matured"], v1["pending"], v1["tp"], v1["fp"]) == (48, 0, 4, 1)  # the seal alerts were right after all
    assert v1["precision"] == pytest.approx(4 / 5)
    assert (v2["matured"], v2["pending"]) == (38, 10) and bool(v2["current"]) and not bool(v1["current"])

    events_until = datetime.combine(D3 + timedelta(days=1), datetime.min.time())
    for day, table in ((D0, d0), (D1, d1), (D2, figures(profile, fleet, D2))):
        for version, expected in reference(day, events_until).items():
            got = overall(table, version)
            assert {k: got[k] for k in ("tp", "fp", "fn", "pending", "matured", "failures")} == \
                {k: expected[k] for k in ("tp", "fp", "fn", "pending", "matured", "failures")}, (day, version)
            np.testing.assert_equal(got["event_recall"], expected["event_recall"])


def test_per_component_figures_and_event_recall(built):
    profile, fleet = built
    table = figures(profile, fleet, D2)
    v1 = table[table["model_version"] == "1"].set_index("scope")
    assert (v1.loc["impeller", "tp"], v1.loc["impeller", "fp"], v1.loc["impeller", "positives"]) == (2, 1, 6)
    assert (v1.loc["seal", "tp"], v1.loc["seal", "fp"], v1.loc["seal", "positives"]) == (2, 0, 3)
    assert v1.loc["overall", "positives"] == v1.loc["impeller", "positives"] + v1.loc["seal", "positives"]
    # v1 caught the impeller failure ahead; v2 missed the seal failure of D1 20:00.
    assert v1.loc["impeller", "event_recall"] == 1.0 and math.isnan(v1.loc["seal", "event_recall"])
    v2 = table[table["model_version"] == "2"].set_index("scope")
    assert (v2.loc["seal", "failures"], v2.loc["seal", "failures_caught"], v2.loc["seal", "event_recall"]) == (1, 0, 0.0)
    assert (v2.loc["seal", "tp"], v2.loc["seal", "fp"], v2.loc["seal", "fn"]) == (0, 1, 6 + 3)


def test_a_missing_events_partition_keeps_predictions_pending(built):
    profile, fleet = built
    fleet.lake.partition_file(fleet.name, "events", D1).unlink()  # events known only up to the end of D0
    table = figures(profile, fleet, D2)
    v1, v2 = overall(table, "1"), overall(table, "2")
    assert (v1["matured"], v1["pending"], v1["fp"]) == (38, 10, 1)
    assert (v2["matured"], v2["pending"]) == (0, 48) and math.isnan(v2["recall"])
    head = perf.headline(table)
    assert head["model_version"] == "2" and head["pending"] == 58 and math.isnan(head["recall"])


def test_predictions_before_the_first_events_partition_have_no_ground_truth(built):
    profile, fleet = built
    early = D0 - timedelta(days=1)
    file = fleet.lake.partition_file(fleet.name, "predictions", early)
    file.parent.mkdir(parents=True)
    prediction_rows(early, "1", {}).to_parquet(file, index=False)
    v1 = overall(figures(profile, fleet, D0), "1")
    assert (v1["no_ground_truth"], v1["matured"], v1["pending"]) == (48, 38, 10)


def test_no_predictions_yet_gives_an_empty_partition(tmp_path):
    fleet = Fleet(tmp_path / "fleet", tmp_path / "lake", tmp_path / "landing")
    profile = fleet.write_profile()
    table = figures(profile, fleet, D0)
    assert table.empty and pd.read_parquet(fleet.lake.partition_file(fleet.name, perf.TABLE, D0)).empty
    assert perf.headline(table)["pending"] == 0


def test_model_performance_asset_and_history(built):
    profile, fleet = built
    [asset] = [a for a in monitoring_assets(FleetContext.of(profile, fleet.profile_dir)) if a.key.path[-1] == perf.TABLE]
    lake = LakeResource(root=str(fleet.lake_root), landing_root=str(fleet.landing_root))
    instance = dg.DagsterInstance.ephemeral()
    for day in (D0, D1):
        result = dg.materialize([asset], partition_key=day.isoformat(), resources={"lake": lake}, instance=instance)
        assert result.success
    meta = materializations(result)[(perf.TABLE, D1.isoformat())]
    written = pd.read_parquet(fleet.lake.partition_file(fleet.name, perf.TABLE, D1))
    v2 = overall(written, "2")
    assert meta["model_version"] == "2" and meta["pending"] == 10 and meta["matured"] == 38
    for key in ("recall", "precision"):
        assert isinstance(meta[key], float) and meta[key] == pytest.approx(v2[key], nan_ok=True)
    assert math.isnan(meta["event_recall"]) and meta["matured_positives"] == v2["positives"]

    history = perf.performance_history(fleet.lake, fleet.name)
    assert [d for d, _ in history] == [D0, D1]
    assert history[0][1]["model_version"] == "1" and history[0][1]["precision"] == pytest.approx(2 / 3)
    assert history[1][1]["recall"] == pytest.approx(meta["recall"], nan_ok=True)
    assert set(history[1][1]["components"]) == set(COMPONENTS)
