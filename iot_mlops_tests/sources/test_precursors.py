"""Each failure mode leaves a precursor in the features the model reads, growing toward the failure, absent when healthy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from iot_mlops.features import compute_features
from iot_mlops.ingestion.ingest import ingest_devices, ingest_events, ingest_telemetry
from iot_mlops.lake import Lake, connect
from iot_mlops.profiles import load_profile
from iot_mlops.sources.landing import simulator_for

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
# The feature that carries each component's late-stage signature.
SIGNATURE = {
    "heating_element": "current_per_kw",  # more current per kW as the element shorts
    "tank": "pressure_bar_std_1h",  # kettling: pressure pulses while heating
    "thermostat": "temperature_c_max_1h",  # overshoot beyond any healthy setpoint
    "seal": "flow_lpm_min_6h",  # a base flow that never stops
}
HOUR = pd.Timedelta(hours=1)


def clean_failures(schedule: pd.DataFrame) -> dict[str, pd.Series]:
    """Per component, the first failure whose device has no other episode from 4 days before it to a day after."""
    picked = {}
    for comp in SIGNATURE:
        failures = schedule[(schedule.component == comp) & ~schedule.averted].sort_values("failure_time")
        for index, row in failures.iterrows():
            others = schedule[(schedule.device_id == row.device_id) & (schedule.index != index)]
            busy = (others.buildup_start < row.end_time + pd.Timedelta(days=1)) & (others.end_time > row.failure_time - pd.Timedelta(days=4))
            if row.failure_time - pd.Timedelta(days=4) > pd.Timestamp("2026-01-02") and not busy.any():
                picked[comp] = row
                break
    return picked


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Features of a 30-heater fleet over the three days up to each component's first clean failure."""
    profile = load_profile(PROFILES / "water_heaters.yaml")
    spec = profile.source.simulator.model_copy(update={"devices": 30})
    profile = profile.model_copy(update={"source": profile.source.model_copy(update={"simulator": spec})})
    simulator = simulator_for(profile)
    schedule = simulator.failure_schedule()
    picked = clean_failures(schedule)
    days = sorted({row.failure_time.date() - dt.timedelta(days=k) for row in picked.values() for k in range(4)})
    root = tmp_path_factory.mktemp("precursors")
    landing = root / "landing" / profile.name
    for day in days:
        simulator.write_landing(day, landing)
    profile = profile.model_copy(update={"partitions": profile.partitions.model_copy(update={"start": days[0], "end": days[-1]})})
    lake = Lake(root / "lake")
    with connect() as con:
        ingest_devices(con, lake, profile, landing)
        ingest_telemetry(con, lake, profile, landing, days)
        ingest_events(con, lake, profile, landing, days)
        compute_features(con, lake, profile, days)
        features = con.execute(f"SELECT * FROM {lake.scan(profile.name, 'features')}").df()
    return features, schedule, picked


@pytest.mark.parametrize("component", SIGNATURE)
def test_each_failure_mode_shows_its_precursor_in_the_features(fleet, component):
    features, schedule, picked = fleet
    row, column = picked[component], SIGNATURE[component]
    failure = row.failure_time
    device = features[features.device_id == row.device_id].set_index("ts")[column]
    last_hours = device[(device.index > failure - 6 * HOUR) & (device.index <= failure)]
    before = device[(device.index > failure - 48 * HOUR) & (device.index <= failure - 36 * HOUR)]

    # healthy: devices with no degradation at all over the two days before this failure
    start = failure - 48 * HOUR
    busy = schedule[(schedule.buildup_start < failure) & (schedule.end_time > start)].device_id
    same_days = features[(features.ts > start) & (features.ts <= failure) & ~features.device_id.isin(busy)]
    assert same_days.device_id.nunique() >= 20
    healthy = same_days[column]

    assert len(last_hours) >= 5 and len(before) >= 10
    assert last_hours.median() > healthy.max(), f"{column}: {last_hours.median()} within the healthy range (max {healthy.max()})"
    assert last_hours.median() > before.max(), f"{column}: no growth toward the failure"
