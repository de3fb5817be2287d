"""Seasonal signals compared with the same hour and month of the reference; per-sensor drift exceptions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iot_mlops.lake import connect
from iot_mlops.monitoring.drift import compute_drift
from iot_mlops.monitoring.reference import SAMPLE_FILE, build_reference, with_bands
from iot_mlops.monitoring.seasonal import deseasonalized, seasonal_features, seasonal_means
from iot_mlops.monitoring.sensor_features import DriftOverrides, drift_overrides, feature_sensors
from iot_mlops.profiles.monitoring import DriftSpec
from iot_mlops_tests.fleet import Fleet

KINDS = {"x": "numeric", "y": "numeric"}
SEASONAL = {"x": ("x", "hour_of_day", "month")}


def hours(start: str, days: int, level: float = 0.0, seed: int = 0, only: range = range(24), devices: int = 20) -> pd.DataFrame:
    """Hourly rows of `devices` devices: x follows a daily cycle of amplitude 10 around `level`, y is plain noise."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=24 * days, freq="h")
    ts = ts[ts.hour.isin(list(only))]
    frame = pd.DataFrame({"device_id": np.repeat([f"d{i}" for i in range(devices)], len(ts)), "ts": np.tile(ts, devices)})
    hour = frame["ts"].dt.hour.to_numpy()
    frame["x"] = level + 10 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 1, len(frame))
    frame["y"] = rng.normal(0, 1, len(frame))
    return frame


def reference_of(tmp_path: Path, frame: pd.DataFrame, seasonal: dict | None):
    with connect() as con:
        con.register("reference_rows", frame)
        means = seasonal_means(con, "reference_rows", seasonal) if seasonal else {}
        reference = build_reference(con, deseasonalized("reference_rows", means), KINDS, DriftSpec(calibrate=False),
                                    tmp_path / SAMPLE_FILE, block="CAST(ts AS DATE)")
    return with_bands(replace(reference, seasonal=means), tmp_path / SAMPLE_FILE), pd.read_parquet(tmp_path / SAMPLE_FILE)


def drifted(reference, sample, day: pd.DataFrame, overrides: DriftOverrides | None = None):
    with connect() as con:
        con.register("day_rows", day)
        return compute_drift(con, "day_rows", reference, sample, DriftSpec(calibrate=False), overrides=overrides)


def test_a_day_seen_at_some_hours_only_is_compared_with_the_same_hours(tmp_path: Path):
    rows = hours("2026-01-01", 14)
    night = hours("2026-01-20", 1, seed=1, only=range(8))  # a gateway that only reported at night
    plain, sample = reference_of(tmp_path / "plain", rows, None)
    assert drifted(plain, sample, night).drifted == ["x"]  # the night is the low part of x's cycle
    seasonal, sample = reference_of(tmp_path / "seasonal", rows, SEASONAL)
    result = drifted(seasonal, sample, night)
    assert result.drifted == [] and result.seasonal == {"x": ["x"]} and result.seasonal_drifted == []
    (x,) = [f for f in result.features if f.feature == "x"]
    assert x.method == "seasonal" and 0 <= x.statistic < 0.2  # the night's level sits mid-band
    shifted = night.assign(x=night["x"] - 6)  # beyond anything the reference saw at those hours
    result = drifted(seasonal, sample, shifted)
    assert result.drifted == ["x"] and result.seasonal_drifted == ["x"]
    assert result.share == 0.0  # y alone counts in the share; x starts a retraining as a seasonal signal


def test_a_month_the_reference_holds_is_compared_with_that_month(tmp_path: Path):
    rows = pd.concat([hours("2026-01-01", 10, level=0.0), hours("2026-07-01", 10, level=20.0, seed=2)])
    reference, sample = reference_of(tmp_path, rows, SEASONAL)
    assert reference.seasonal["x"]["months"].keys() == {"1", "7"}
    assert drifted(reference, sample, hours("2027-07-10", 1, level=20.0, seed=3)).drifted == []  # July as July was
    assert drifted(reference, sample, hours("2027-01-10", 1, level=0.0, seed=4)).drifted == []
    # March is not in the reference: against the whole reference's hour means, a July level in March is drift.
    assert drifted(reference, sample, hours("2027-03-10", 1, level=20.0, seed=5)).seasonal_drifted == ["x"]


def test_per_sensor_drift_exceptions(tmp_path: Path):
    reference, sample = reference_of(tmp_path, hours("2026-01-01", 14), None)
    day = hours("2026-01-20", 1, seed=1).assign(y=lambda f: f["y"] + 1.0)  # y moves one std
    result = drifted(reference, sample, day)
    assert result.drifted == ["y"]
    psi = next(f.psi for f in result.features if f.feature == "y")
    raised = drifted(reference, sample, day, DriftOverrides(psi_threshold={"y": psi * 2}))
    assert raised.drifted == [] and next(f.threshold for f in raised.features if f.feature == "y") == pytest.approx(psi * 2)
    ignored = drifted(reference, sample, day, DriftOverrides(ignored=frozenset({"y"})))
    assert [f.feature for f in ignored.features] == ["x"] and ignored.share == 0.0


def test_features_belong_to_their_sensors_and_the_profile_sets_their_exceptions(fleet: Fleet):
    fleet.spec["sensors"].append({"name": "temp_out", "unit": "degC", "min": 0, "max": 100})
    fleet.spec["monitoring"] = {"sensors": {"pressure": {"ignore": ["drift"]}, "temp": {"psi_threshold": 0.5}},
                                "drift": {"seasonal": [{"sensor": "temp_out", "by": "hour_of_week", "season": "none"}]}}
    profile = fleet.write_profile()
    features = ["temp_mean_1h", "temp_out_max_3h", "pressure_diff", "temp_minus_pressure", "error_count_6h", "age"]
    assert feature_sensors(profile, features) == {"temp_mean_1h": {"temp"}, "temp_out_max_3h": {"temp_out"},
                                                  "pressure_diff": {"pressure"}, "temp_minus_pressure": {"temp", "pressure"}}
    overrides = drift_overrides(profile, features)
    assert overrides.ignored == {"pressure_diff", "temp_minus_pressure"}
    assert overrides.psi_threshold == {"temp_mean_1h": 0.5, "temp_minus_pressure": 0.5}
    kinds = {f: "numeric" for f in features}
    assert seasonal_features(profile, kinds) == {"temp_out_max_3h": ("temp_out", "hour_of_week", "none")}
    fleet.spec["monitoring"]["drift"]["seasonal"] = [{"sensor": "temp"}]
    assert seasonal_features(fleet.write_profile(), kinds) == {"temp_mean_1h": ("temp", "hour_of_day", "month")}
