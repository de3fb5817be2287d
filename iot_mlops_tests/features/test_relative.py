"""Device-relative features: z-scores against the device's own trailing baseline and differences from its cohort."""

from __future__ import annotations

import shutil
import statistics
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from iot_mlops.features import get_device_features
from iot_mlops.features.assets import features_assets
from iot_mlops.features.relative import Z_LIMIT
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake.resource import LakeResource
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import load_profile
from iot_mlops.sources.landing import simulator_for
from iot_mlops_tests.fleet import DAYS, DEVICES, PROFILES, RANGE_END, RANGE_START, Fleet, reading

RELATIVE = {"baseline": "6h", "baseline_gap": "2h", "cohort": "model"}
MODELS = {d: f"m{i % 2}" for i, d in enumerate(DEVICES)}  # as Fleet.write_clean writes them
SENSORS = ("temp", "pressure")


@pytest.fixture
def relative_fleet(fleet: Fleet) -> Fleet:
    fleet.spec["features"]["relative"] = RELATIVE
    fleet.write_profile()
    assert fleet.materialize(days=(DAYS[0], DAYS[-1])).success
    return fleet


def expected(device: str, t, sensor: str) -> tuple[float, float]:
    """(z-score, difference from the cohort median) by the definition, from the readings themselves.

    Hourly readings: bucket [t - 1h, t) holds the reading at t - 1h; the 6 h baseline ends 2 h before that bucket.
    """
    value = reading(device, t - timedelta(hours=1))[sensor]
    hours = [t - timedelta(hours=h) for h in range(4, 10)]
    baseline = [reading(device, ts)[sensor] for ts in hours if ts >= pd.Timestamp(DAYS[0])]
    z = 0.0
    if len(baseline) >= 3 and statistics.stdev(baseline) > 0:
        z = max(-Z_LIMIT, min(Z_LIMIT, (value - statistics.mean(baseline)) / statistics.stdev(baseline)))
    cohort = [reading(d, t - timedelta(hours=1))[sensor] for d in DEVICES if MODELS[d] == MODELS[device]]
    return z, value - statistics.median(cohort)


def test_relative_features_match_their_definition(relative_fleet: Fleet):
    for day in DAYS[:3]:  # day by day: baselines after the first day read the stored partitions before it
        assert relative_fleet.materialize("features", day=day).success
    frame = pd.concat([relative_fleet.read("features", d) for d in DAYS[:3]])
    assert len(frame) == (3 * 24 - 1) * len(DEVICES)  # the first day has no 00:00 row: nothing before it
    for _, row in frame.iterrows():
        for sensor in SENSORS:
            z, versus = expected(row["device_id"], row["ts"], sensor)
            assert row[f"{sensor}_z_6h"] == pytest.approx(z, abs=1e-6), (row["device_id"], row["ts"], sensor)
            assert row[f"{sensor}_vs_model"] == pytest.approx(versus, abs=1e-9)
    first = frame[frame["ts"] < pd.Timestamp(DAYS[0]) + timedelta(hours=6)]
    assert (first[["temp_z_6h", "pressure_z_6h"]] == 0).all().all()  # too little history yet: 0, not NULL
    assert (frame["temp_z_6h"] != 0).mean() > 0.5
    assert (frame.loc[frame["device_id"] == "d2", ["temp_vs_model", "pressure_vs_model"]] == 0).all().all()  # alone in m1


def test_range_run_equals_day_by_day_and_online_rows(relative_fleet: Fleet, tmp_path: Path):
    ranged = Fleet(relative_fleet.root, tmp_path / "ranged_lake", relative_fleet.landing_root)
    shutil.copytree(relative_fleet.lake_root, ranged.lake_root)
    for day in DAYS:
        assert relative_fleet.materialize("features", day=day).success
    assert ranged.materialize("features", days=(DAYS[0], DAYS[-1])).success
    for day in DAYS:
        pd.testing.assert_frame_equal(relative_fleet.read("features", day), ranged.read("features", day), check_exact=True)
    batch = relative_fleet.read("features", DAYS[-1])
    assert {"temp_z_6h", "pressure_z_6h", "temp_vs_model", "pressure_vs_model"} <= set(batch.columns)
    for device in DEVICES:
        newest = batch[batch["device_id"] == device].sort_values("ts").iloc[-1]
        online = get_device_features(relative_fleet.name, device, relative_fleet.lake_root)
        assert list(online) == list(batch.columns)
        assert all(value == newest[name] or (pd.isna(value) and pd.isna(newest[name])) for name, value in online.items())


def test_a_constant_baseline_gives_z_zero(fleet: Fleet):
    fleet.spec["features"]["relative"] = {"baseline": "6h"}
    fleet.write_profile()
    for day in DAYS[:2]:
        fleet.write("telemetry", [{**r, "pressure": 1.31} for r in [reading(d, pd.Timestamp(day) + timedelta(hours=h))
                                                                    for d in DEVICES for h in range(24)]], day)
    assert fleet.materialize(days=(DAYS[0], DAYS[1])).success
    assert fleet.materialize("features", days=(DAYS[0], DAYS[1])).success
    frame = fleet.read("features", DAYS[1])
    assert (frame["pressure_z_6h"] == 0).all()
    assert "pressure_vs_model" not in frame.columns  # no cohort asked for


EPOCH = date(2026, 1, 1)
SIM_DAYS = [EPOCH + timedelta(days=i) for i in range(14)]
BATCH_FROM = SIM_DAYS[10]


def test_new_model_reads_normal_against_its_cohort_while_a_failing_heater_drifts_from_its_baseline(tmp_path: Path):
    """The real simulator: 40 heaters for two weeks, 6 of a new model (other setpoint and pressure) from day 11."""
    spec = yaml.safe_load((PROFILES / "water_heaters.yaml").read_text())
    spec.update(name="heaters", sampling_interval="10min")
    next(s for s in spec["sensors"] if s["name"] == "energy_kwh")["max"] *= 10  # energy per sample grows with the interval
    spec["source"]["simulator"] = {"devices": 40, "seed": 11, "epoch": EPOCH.isoformat(),
                                   "drift": {"new_model_batch_from": BATCH_FROM.isoformat(), "new_model_batch_size": 6}}
    spec["partitions"] = {"start": EPOCH.isoformat(), "end": SIM_DAYS[-1].isoformat()}
    assert spec["features"]["relative"] == {"baseline": "7d", "baseline_gap": "24h", "cohort": "model"}  # as shipped
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "heaters.yaml").write_text(yaml.safe_dump(spec))
    profile = load_profile(tmp_path / "profiles" / "heaters.yaml")
    simulator = simulator_for(profile)
    for day in SIM_DAYS:
        simulator.write_landing(day, tmp_path / "landing" / "heaters")
    result = dg.materialize(
        [*ingestion_assets(FleetContext.of(profile, tmp_path / "profiles")), *features_assets(FleetContext.of(profile, tmp_path / "profiles"))],
        tags={RANGE_START: SIM_DAYS[0].isoformat(), RANGE_END: SIM_DAYS[-1].isoformat()},
        resources={"lake": LakeResource(root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))},
    )
    assert result.success
    frame = pd.concat(pd.read_parquet(tmp_path / "lake" / "heaters" / "features" / f"date={d}" / "data.parquet") for d in SIM_DAYS)
    relative = [c for c in frame.columns if c.endswith(("_z_7d", "_vs_model"))]
    assert len(relative) == 2 * len(profile.sensors)
    assert not frame[relative].isna().any().any()

    new = frame[frame["model"] == "EcoHeat-X"]
    old = frame[(frame["model"] != "EcoHeat-X") & (frame["ts"] >= pd.Timestamp(BATCH_FROM))]
    assert new["device_id"].nunique() == 6 and new["ts"].min().date() == BATCH_FROM
    for sensor, apart in (("temperature_c", 5.0), ("pressure_bar", 0.8)):
        gap = new[f"{sensor}_mean_1h"].median() - old[f"{sensor}_mean_1h"].median()
        assert abs(gap) > apart  # the new model runs at other levels...
        assert new[f"{sensor}_vs_model"].abs().median() < abs(gap) / 5  # ...which its cohort takes away
        assert new[f"{sensor}_vs_model"].abs().median() < 2 * old[f"{sensor}_vs_model"].abs().median()
        assert (new[f"{sensor}_z_7d"] == 0).all()  # three days of history: too short a baseline

    # A leaking seal lowers the pressure over 36 h: against the heater's own week its z-score falls.
    schedule = simulator.failure_schedule()
    leaks = schedule[(schedule["component"] == "seal") & ~schedule["averted"]
                     & (schedule["buildup_start"] > pd.Timestamp(SIM_DAYS[6])) & (schedule["failure_time"] < pd.Timestamp(SIM_DAYS[-1]))]
    assert len(leaks), "the seed must give a seal failure with a week of history"
    for _, leak in leaks.iterrows():
        own = frame[frame["device_id"] == leak["device_id"]].set_index("ts").sort_index()["pressure_bar_z_7d"]
        healthy = own[leak["buildup_start"] - timedelta(days=2):leak["buildup_start"]]
        failing = own[leak["failure_time"] - timedelta(hours=6):leak["failure_time"]]
        assert abs(healthy.mean()) < 1.5 and failing.max() < -3, (leak["device_id"], healthy.describe(), failing.describe())


def test_a_day_whose_baseline_days_lack_features_fails_instead_of_shifting(relative_fleet: Fleet):
    """Without the day before's features a baseline would be shorter than day by day gives: refused, nothing written."""
    result = relative_fleet.materialize("features", day=DAYS[1])
    assert not result.success
    error = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error
    assert error.cause.cls_name == "FeatureInputError" and f"{DAYS[0]}..{DAYS[0]}, which are missing" in error.cause.message
    assert relative_fleet.lake.partitions(relative_fleet.name, "features") == []
    assert relative_fleet.materialize("features", days=(DAYS[0], DAYS[1])).success  # in one run, in order
