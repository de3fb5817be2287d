"""On a healthy simulated fleet no day starts a retraining from drift or data quality; each injected drift
scenario starts one by its second day: a new device batch (drift share), degF recalibration of 20% of the
heaters (data quality) and a seasonal inlet shift beyond the reference (a named seasonal signal)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import yaml

from iot_mlops.automation.policy import drift_condition, quality_condition
from iot_mlops.lake import Lake, connect
from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.drift import compute_drift, day_relation
from iot_mlops.monitoring.quality import check_partition, worst
from iot_mlops.monitoring.reference import load_reference_profile, load_reference_sample
from iot_mlops.monitoring.sensor_features import drift_overrides
from iot_mlops.profiles import load_profile
from iot_mlops_tests.fleet import PROFILES
from iot_mlops_tests.training.pipeline import all_assets, registry_resource, run

FLEET = "heaters"
EPOCH = date(2026, 1, 1)
LABELLED = EPOCH + timedelta(days=13)  # the training dataset (and its reference) covers these two weeks
WATCHED = [LABELLED + timedelta(days=i) for i in range(1, 9)]  # the days the monitors judge
DRIFT_FROM = WATCHED[2]
SCENARIOS = {
    "new_model_batch": {"new_model_batch_from": DRIFT_FROM.isoformat(), "new_model_batch_size": 15},
    "recalibrated_units": {"recalibrated_units_from": DRIFT_FROM.isoformat(), "recalibrated_share": 0.2},
    "seasonal_inlet_shift": {"seasonal_inlet_shift_from": DRIFT_FROM.isoformat()},
}


def monitored(root: Path, drift: dict, last: date) -> tuple[list[tuple[date, float]], list[tuple[date, str]], object, dict]:
    """Simulate 40 heaters, build the training dataset on two weeks, then each watched day's drift share and quality."""
    spec = yaml.safe_load((PROFILES / "water_heaters.yaml").read_text())
    spec.update(name=FLEET, sampling_interval="10min")
    next(s for s in spec["sensors"] if s["name"] == "energy_kwh")["max"] *= 10  # energy per sample grows with the interval
    spec["source"]["simulator"] = {"devices": 40, "seed": 11, "epoch": EPOCH.isoformat(), "drift": drift}
    spec["partitions"] = {"start": EPOCH.isoformat(), "end": last.isoformat()}
    spec["features"].update(windows=["1h", "6h"], aggregations=["mean", "max"])
    (root / "profiles").mkdir(parents=True)
    (root / "profiles" / f"{FLEET}.yaml").write_text(yaml.safe_dump(spec))
    profile = load_profile(root / "profiles" / f"{FLEET}.yaml")
    lake_resource = LakeResource(root=str(root / "lake"), landing_root=str(root / "landing"))
    assets, registry = all_assets(profile, root / "profiles"), registry_resource(root / "registry")
    assert run(assets, lake_resource, registry, "devices", "telemetry", "events", "features", fleet=FLEET, days=(EPOCH, last)).success
    assert run(assets, lake_resource, registry, "labels", fleet=FLEET, days=(EPOCH, LABELLED)).success
    assert run(assets, lake_resource, registry, "training_dataset", fleet=FLEET).success
    lake = Lake(root / "lake")
    reference = load_reference_profile(lake, FLEET)
    sample = load_reference_sample(reference)
    shares, quality, drifted = [], [], {}
    overrides = drift_overrides(profile, [f.name for f in reference.features])
    with connect() as con:
        for day in [d for d in WATCHED if d <= last]:
            result = compute_drift(con, day_relation(lake, FLEET, day), reference, sample, profile.monitoring.drift,
                                   overrides=overrides)
            shares.append((day, result.share))
            drifted[day] = set(result.drifted)
            drifted[day, "seasonal"] = result.seasonal_drifted
            quality.append((day, worst([r.severity for r in check_partition(con, lake, profile, day)])))
    return shares, quality, profile.monitoring.retraining, drifted


def triggers(shares, quality, policy, drifted) -> list[str]:
    """Each day the drift or the data-quality sensor would start a retraining, judging the history so far."""
    fired, seasonal = [], {day: drifted[day, "seasonal"] for day, _ in shares}
    for i in range(1, len(shares) + 1):
        if drift_condition(shares[:i], policy, None, seasonal).fired:
            fired.append(f"drift on {shares[i - 1][0]}")
        if quality_condition(quality[:i], policy).fired:
            fired.append(f"quality on {quality[i - 1][0]}")
    return fired


def test_a_healthy_fleet_starts_no_retraining_on_any_day(tmp_path: Path):
    shares, quality, policy, drifted = monitored(tmp_path, {}, WATCHED[-1])
    assert triggers(shares, quality, policy, drifted) == [], (shares, quality)
    print("healthy simulator", [(str(d), round(s, 3)) for d, s in shares], quality)
    assert max(share for _, share in shares) < policy.drift_share_high


def drift_scenario(tmp_path: Path, scenario: str):
    shares, quality, policy, drifted = monitored(tmp_path, SCENARIOS[scenario], DRIFT_FROM + timedelta(days=1))
    assert all(share < policy.drift_share_high for day, share in shares if day < DRIFT_FROM), shares
    print(scenario, [(str(d), round(s, 3)) for d, s in shares], quality)
    return triggers(shares, quality, policy, drifted), drifted


def test_a_new_device_batch_starts_a_drift_retraining_on_its_second_day(tmp_path: Path):
    fired, _ = drift_scenario(tmp_path, "new_model_batch")
    assert fired == [f"drift on {DRIFT_FROM + timedelta(days=1)}"]


def test_recalibrated_heaters_start_a_data_quality_retraining_on_the_second_day(tmp_path: Path):
    # Temperatures in degF leave the sensor's range: quarantined rows, ERROR out-of-range share on both days.
    fired, _ = drift_scenario(tmp_path, "recalibrated_units")
    assert f"quality on {DRIFT_FROM + timedelta(days=1)}" in fired


def test_a_seasonal_inlet_shift_beyond_the_reference_starts_a_drift_retraining_on_its_second_day(tmp_path: Path):
    # One sensor of seven: the drift share stays low, but inlet_temp_c is a named seasonal signal, compared with the
    # same hour and month of the reference; a level beyond it is one the model never saw (policy.drift_condition).
    fired, drifted = drift_scenario(tmp_path, "seasonal_inlet_shift")
    inlet = {"inlet_temp_c_mean_1h", "inlet_temp_c_max_1h", "inlet_temp_c_mean_6h", "inlet_temp_c_max_6h"}
    assert all(inlet <= drifted[day] for day in (DRIFT_FROM, DRIFT_FROM + timedelta(days=1))), drifted
    assert not any(drifted[day, "seasonal"] for day in WATCHED if day < DRIFT_FROM), drifted
    assert fired == [f"drift on {DRIFT_FROM + timedelta(days=1)}"]
