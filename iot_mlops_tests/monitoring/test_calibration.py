"""Calibrated drift thresholds: a healthy day of an autocorrelated fleet is not drift, a real shift still is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iot_mlops.lake import connect
from iot_mlops.monitoring.calibration import MIN_BLOCKS, null_statistics
from iot_mlops.monitoring.drift import compute_drift, psi
from iot_mlops.monitoring.reference import SAMPLE_FILE, build_reference
from iot_mlops.monitoring.verdicts import calibration_line
from iot_mlops.profiles.monitoring import DriftSpec

DEVICES, HOURS = 60, 24
SENSORS = [f"s{i}" for i in range(8)]
KINDS = {**{s: "numeric" for s in SENSORS}, "mode": "categorical"}
OFFSETS = np.random.default_rng(99).normal(0, 1.0, (DEVICES, len(SENSORS)))  # each device's own level


def fleet_days(first: int, days: int, seed: int, shift: float = 0.0, offsets: np.ndarray = OFFSETS) -> pd.DataFrame:
    """Hourly rows of a healthy fleet: device levels, a shared daily swing (weather) and slow hourly noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(first, first + days):
        day_effect = rng.normal(0, 0.5, len(SENSORS))
        noise = np.cumsum(rng.normal(0, 0.15, (DEVICES, HOURS, len(SENSORS))), axis=1)  # autocorrelated within a day
        values = 20 + offsets[:, None, :] + day_effect[None, None, :] + noise + shift
        ts = pd.Timestamp("2026-01-01") + pd.Timedelta(days=d) + pd.to_timedelta(np.arange(HOURS), unit="h")
        frame = pd.DataFrame(values.reshape(-1, len(SENSORS)), columns=SENSORS)
        frame["device_id"] = np.repeat([f"d{i}" for i in range(DEVICES)], HOURS)
        frame["ts"] = np.tile(ts, DEVICES)
        busy = 0.3 + 0.1 * rng.normal()  # the share of devices in heavy use drifts a little from day to day
        frame["mode"] = np.where(rng.random(len(frame)) < busy, "heavy", "normal")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def reference_of(tmp_path: Path, frame: pd.DataFrame, calibrate: bool):
    spec = DriftSpec(reference_sample=2000, calibrate=calibrate)
    with connect() as con:
        con.register("reference", frame)
        return build_reference(con, "reference", KINDS, spec, tmp_path / SAMPLE_FILE, block="CAST(ts AS DATE)"), spec


def shares(reference, spec, days: list[pd.DataFrame]) -> list[float]:
    with connect() as con:
        found = []
        for day in days:
            con.register("current", day)
            found.append(compute_drift(con, "current", reference, None, spec).share)
            con.unregister("current")
        return found


@pytest.fixture(scope="module")
def healthy():
    return fleet_days(0, 20, seed=1), [fleet_days(20 + i, 1, seed=100 + i) for i in range(10)]


def test_healthy_days_of_an_autocorrelated_fleet_are_not_drift(tmp_path: Path, healthy):
    reference_rows, new_days = healthy
    fixed, fixed_spec = reference_of(tmp_path / "fixed", reference_rows, calibrate=False)
    calibrated, spec = reference_of(tmp_path / "calibrated", reference_rows, calibrate=True)
    # The fixed thresholds cry wolf on these healthy days (why calibration exists) ...
    assert max(shares(fixed, fixed_spec, new_days)) >= 0.3
    # ... the calibrated ones stay below a retraining policy's 0.3 on every day.
    assert max(shares(calibrated, spec, new_days)) < 0.3
    assert all(f.null_threshold is not None for f in calibrated.features)
    assert all(f.null_threshold is None for f in fixed.features)


def test_a_shifted_fleet_and_a_new_device_batch_still_drift(tmp_path: Path, healthy):
    reference_rows, _ = healthy
    calibrated, spec = reference_of(tmp_path, reference_rows, calibrate=True)
    recalibrated = fleet_days(21, 1, seed=7, shift=3.0)  # e.g. a firmware unit change on every sensor
    new_batch = pd.concat([fleet_days(21, 1, seed=8),
                           fleet_days(21, 1, seed=9, offsets=OFFSETS + 4.0).assign(device_id=lambda f: "n" + f["device_id"])])
    assert all(share >= 0.5 for share in shares(calibrated, spec, [recalibrated, new_batch]))


def test_null_statistics_compare_each_block_with_the_rest():
    blocks = [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
    total = [10, 10, 10]
    rests = [[0, 10, 10], [10, 0, 10], [10, 10, 0]]
    assert null_statistics("numeric", total, [], blocks) == pytest.approx([psi(r, b) for r, b in zip(rests, blocks)])
    counts = [{"a": 5, "b": 5}, {"a": 5, "b": 5}]
    assert null_statistics("categorical", [10, 10], ["a", "b"], counts) == [0.0, 0.0]
    assert null_statistics("numeric", [5], [], [[5]]) == []  # nothing left to compare with


def test_too_few_days_keep_the_fixed_threshold(tmp_path: Path):
    calibrated, _ = reference_of(tmp_path, fleet_days(0, MIN_BLOCKS - 1, seed=3), calibrate=True)
    assert all(f.null_threshold is None for f in calibrated.features)


def test_the_drift_page_says_how_many_thresholds_calibration_raised(tmp_path: Path, healthy):
    reference_rows, _ = healthy
    fixed, fixed_spec = reference_of(tmp_path / "fixed", reference_rows, calibrate=False)
    calibrated, spec = reference_of(tmp_path / "calibrated", reference_rows, calibrate=True)
    raised = sum(f.kind == "numeric" and f.null_threshold > spec.psi_threshold for f in calibrated.features)
    assert raised > 0
    (line,) = calibration_line(calibrated, spec)
    assert f"{raised} PSI thresholds rose above {spec.psi_threshold}" in line and "99% quantile" in line
    assert calibration_line(fixed, fixed_spec) == []
