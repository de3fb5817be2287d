"""A run-to-failure fleet read from table files through a profile alone: no day starts a retraining from drift or
data quality, though channels are constant by design, units start and fail mid-day, and hourly rows wander."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np

from iot_mlops.automation.policy import drift_condition, quality_condition
from iot_mlops.lake import Lake, connect
from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.drift import compute_drift, day_relation, drift_history, seasonal_drift_history
from iot_mlops.monitoring.drift_assets import drift_assets
from iot_mlops.monitoring.quality import TABLE as QUALITY
from iot_mlops.monitoring.quality_assets import quality_assets
from iot_mlops.monitoring.quality_store import quality_history
from iot_mlops.monitoring.reference import load_reference_profile
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import load_profile
from iot_mlops_tests.monitoring.run_to_failure import NAME, START, land, write_profile
from iot_mlops_tests.training.pipeline import all_assets, registry_resource, run

DAYS = 60
LAST = START + timedelta(days=DAYS - 1)
LABELLED = START + timedelta(days=39)  # the training dataset (and its reference) covers these 40 days


def monitored(root: Path):
    """Land the fleet, build its training dataset, then materialize data_quality and drift_report for every day."""
    units = land(root / "source", DAYS)
    profile_dir = root / "profiles"
    profile = load_profile(write_profile(profile_dir / f"{NAME}.yaml", root / "source", DAYS))
    assets = [*all_assets(profile, profile_dir), *quality_assets(FleetContext.of(profile, profile_dir)), *drift_assets(FleetContext.of(profile, profile_dir))]
    lake_resource = LakeResource(root=str(root / "lake"), landing_root=str(root / "landing"))
    registry = registry_resource(root / "registry")
    assert run(assets, lake_resource, registry, "devices", "telemetry", "events", "features", fleet=NAME, days=(START, LAST)).success
    assert run(assets, lake_resource, registry, "labels", fleet=NAME, days=(START, LABELLED)).success
    assert run(assets, lake_resource, registry, "training_dataset", fleet=NAME).success
    assert run(assets, lake_resource, registry, QUALITY, "drift_report", fleet=NAME, days=(START, LAST),
               config={"drift_report": {"config": {"evidently": False}}}, instance=dg.DagsterInstance.ephemeral()).success
    return units, profile, Lake(root / "lake")


def test_a_run_to_failure_fleet_starts_no_retraining_from_drift_or_data_quality(tmp_path: Path):
    units, profile, lake = monitored(tmp_path)
    starts = {START + timedelta(hours=int(h)) for h in units["first"]}  # date + hours: the day it starts
    assert len(starts) > 10 and len(units) > 25  # units start (and fail) on many days, mid-day
    shares = [(day, share) for day, share, _ in drift_history(lake, NAME)]
    quality = quality_history(lake, NAME)
    seasonal = seasonal_drift_history(lake, NAME)
    assert [d for d, _ in shares] == [d for d, _ in quality] == [START + timedelta(days=i) for i in range(DAYS)]
    policy, fired = profile.monitoring.retraining, []
    for i in range(1, DAYS + 1):
        if drift_condition(shares[:i], policy, None, seasonal).fired:
            fired.append(f"drift on {shares[i - 1][0]}")
        if quality_condition(quality[:i], policy).fired:
            fired.append(f"quality on {quality[i - 1][0]}")
    print("run-to-failure drift", [(str(d), round(s, 3)) for d, s in shares])
    print("run-to-failure quality", [(str(d), s) for d, s in quality])
    assert fired == [], (shares, quality)

    # The fleet is as hard as it should be: against fixed thresholds, an ordinary day looks drifted.
    reference = load_reference_profile(lake, NAME)
    fixed = replace(reference, features=[replace(f, null_threshold=None) for f in reference.features])
    with connect() as con:
        raw = [compute_drift(con, day_relation(lake, NAME, day), fixed, None, profile.monitoring.drift).share for day, _ in shares]
    print("run-to-failure drift share with fixed thresholds", [round(s, 3) for s in raw])
    assert float(np.median(raw)) >= profile.monitoring.drift.dataset_drift_share
