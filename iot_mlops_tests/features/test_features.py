"""Feature definitions on the synthetic fleet, and that no feature sees data at or after its time."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from iot_mlops.features import FeatureInputError, compute_features
from iot_mlops.lake import connect
from iot_mlops_tests.fleet import DAYS, Fleet, check_results, clean_day, materializations, reading, stamp

ALL = ("devices", "telemetry", "events", "features")


def feature_row(fleet: Fleet, device: str, ts) -> pd.Series:
    frame = fleet.read("features", ts.date())
    match = frame[(frame["device_id"] == device) & (frame["ts"] == pd.Timestamp(ts))]
    assert len(match) == 1
    return match.iloc[0]


def test_features_match_their_definition(fleet: Fleet):
    day = DAYS[1]
    t = stamp(day, 1)  # windows reach back across midnight into the previous partition
    fleet.write_events(DAYS[0], "error", [("d2", t - timedelta(hours=6), "E1"), ("d2", t - timedelta(hours=6, seconds=1), "E1")])
    fleet.write_events(day, "error", [("d2", t - timedelta(minutes=1), "E1"), ("d2", t, "E1"), ("d1", t - timedelta(hours=1), "E1")])
    fleet.write_events(DAYS[0], "maintenance", [("d2", stamp(DAYS[0], -30), "seal"), ("d2", stamp(DAYS[0], 5), "seal")])
    assert fleet.materialize(*ALL, days=(DAYS[0], day)).success

    seen = [reading("d2", t - timedelta(hours=h)) for h in (3, 2, 1)]
    temp = pd.Series([r["temp"] for r in seen])
    row = feature_row(fleet, "d2", t)
    # Features are stored rounded to 6 decimals.
    assert row["temp_mean_1h"] == pytest.approx(seen[-1]["temp"], abs=1e-6)
    assert "temp_std_1h" not in row  # a one-hour window of hourly readings: never two samples
    assert row["temp_mean_3h"] == pytest.approx(temp.mean(), abs=1e-6)
    assert row["temp_std_3h"] == pytest.approx(temp.std(ddof=1), abs=1e-6)
    assert (row["temp_min_3h"], row["temp_max_3h"]) == (temp.min(), temp.max())
    assert row["temp_diff"] == pytest.approx(seen[2]["temp"] - seen[1]["temp"], abs=1e-6)
    assert row["temp_pct_change"] == pytest.approx((seen[2]["temp"] - seen[1]["temp"]) / abs(seen[1]["temp"]), abs=1e-6)
    assert row["temp_minus_pressure"] == pytest.approx(seen[2]["temp"] - seen[2]["pressure"], abs=1e-6)
    assert (row["errors_e1_6h"], row["errors_e2_6h"]) == (2, 0)
    assert row["hours_since_maint_seal"] == pytest.approx(20.0)
    assert pd.isna(row["hours_since_maint_impeller"])
    assert (row["model"], row["age"]) == ("m1", 4.0)


def test_one_row_per_device_and_step(fleet: Fleet):
    result = fleet.materialize(*ALL, days=(DAYS[0], DAYS[1]))
    assert result.success
    assert check_results(result)[("features", "one_row_per_device_and_time")].passed
    frame = fleet.read("features", DAYS[1])
    # Every hour of the day for every device: the 00:00 row uses the previous day's last hour.
    assert len(frame) == 3 * 24
    assert frame["ts"].min() == pd.Timestamp(stamp(DAYS[1])) and frame["ts"].max() == pd.Timestamp(stamp(DAYS[1], 23))
    meta = materializations(result)[("features", DAYS[1].isoformat())]
    assert meta["feature_count"] == len(frame.columns) - 2
    assert meta["rows_per_day"] == {d.isoformat(): len(fleet.read("features", d)) for d in DAYS[:2]}
    assert "dagster/row_count" not in meta
    single = materializations(fleet.materialize("features", day=DAYS[1]))[("features", DAYS[1].isoformat())]
    assert single["dagster/row_count"] == len(frame)


def test_no_feature_uses_data_at_or_after_its_time(fleet: Fleet):
    days = (DAYS[0], DAYS[2])
    assert fleet.materialize(*ALL, days=days).success
    before = pd.concat([fleet.read("features", d) for d in DAYS[:3]])

    t = stamp(DAYS[1], 10)
    rows = clean_day(DAYS[1])
    for r in rows:
        if r["device"] == "d1" and pd.Timestamp(r["time"]) >= pd.Timestamp(t):
            r["temp"], r["pressure"] = 99.0, 9.5
    fleet.write("telemetry", rows, DAYS[1])
    fleet.write_events(DAYS[1], "error", [("d1", t, "E2")])
    fleet.write_events(DAYS[1], "maintenance", [("d1", t, "impeller")])
    assert fleet.materialize(*ALL, days=days).success
    after = pd.concat([fleet.read("features", d) for d in DAYS[:3]])

    key = ["device_id", "ts"]
    merged = before.merge(after, on=key, suffixes=("_old", "_new"))
    assert len(merged) == len(before) == len(after)
    columns = [c for c in before.columns if c not in key]
    changed = merged[[not all(_same(r[f"{c}_old"], r[f"{c}_new"]) for c in columns) for _, r in merged.iterrows()]]
    assert not changed.empty, "the perturbation must show up somewhere"
    assert set(changed["device_id"]) == {"d1"}
    assert changed["ts"].min() == pd.Timestamp(t + timedelta(hours=1))
    first = feature_row(fleet, "d1", t + timedelta(hours=1))
    assert (first["temp_mean_1h"], first["errors_e2_6h"], first["hours_since_maint_impeller"]) == (99.0, 1, 1.0)


def _same(a, b) -> bool:
    return (pd.isna(a) and pd.isna(b)) or a == b


def test_features_need_telemetry(fleet: Fleet):
    assert fleet.materialize("devices").success
    with connect() as con, pytest.raises(FeatureInputError, match="telemetry"):
        compute_features(con, fleet.lake, fleet.profile(), [DAYS[0]])
    result = fleet.materialize("features", day=DAYS[0])
    assert not result.success
    assert not fleet.file("features", DAYS[0]).exists()


def test_std_of_a_constant_sensor_is_exactly_zero(fleet: Fleet):
    for day in DAYS[:2]:
        fleet.write("telemetry", [{**r, "pressure": 1.31} for r in clean_day(day)], day)
    assert fleet.materialize(*ALL, days=(DAYS[0], DAYS[1])).success
    frame = fleet.read("features", DAYS[1])
    assert len(frame) == 3 * 24
    assert (frame["pressure_std_3h"] == 0.0).all()
    for _, row in frame.iterrows():
        window = [reading(row["device_id"], row["ts"] - timedelta(hours=h))["temp"] for h in (3, 2, 1)]
        assert row["temp_std_3h"] == pytest.approx(np.std(window, ddof=1), rel=1e-9, abs=0)


def test_no_feature_column_is_null_by_construction(fleet: Fleet):
    fleet.spec["source"]["events"] = [e for e in fleet.spec["source"]["events"] if e["kind"] != "maintenance"]
    fleet.write_profile()
    fleet.write_events(DAYS[0], "error", [("d1", stamp(DAYS[0], 3), "E1"), ("d2", stamp(DAYS[0], 4), "E2")])
    result = fleet.materialize(*ALL, days=(DAYS[0], DAYS[1]))
    assert result.success
    frame = fleet.read("features", DAYS[1])
    assert not [c for c in frame.columns if c.startswith("hours_since_maint_")]
    assert {"errors_e1_6h", "hours_since_error_e1"} <= set(frame.columns)
    # Hourly readings: a 1 h window holds one sample (no std), a 3 h window three.
    assert {c for c in frame.columns if "_std_" in c} == {"temp_std_3h", "pressure_std_3h"}
    assert {"temp_mean_1h", "temp_min_1h", "temp_max_1h"} <= set(frame.columns)
    assert not [c for c in frame.columns if frame[c].isna().all()]
    assert materializations(result)[("features", DAYS[1].isoformat())]["features"] == list(frame.columns[2:])


def test_std_of_a_window_longer_than_the_sampling_interval_is_kept(fleet: Fleet):
    fleet.spec["sampling_interval"] = "30min"
    fleet.write_profile()
    assert fleet.materialize(*ALL, days=(DAYS[0], DAYS[1])).success
    assert {"temp_std_1h", "temp_std_3h"} <= set(fleet.read("features", DAYS[1]).columns)
