"""Simulated readings are rounded to each sensor's resolution from the profile, as real sensors report them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.sources.landing import simulator_for
from iot_mlops.sources.simulator import SENSORS, WaterHeaterSimulator

PROFILE = FleetProfile.model_validate(
    yaml.safe_load((Path(__file__).parents[2] / "profiles" / "water_heaters.yaml").read_text())
)
SMALL = PROFILE.model_copy(update={"source": PROFILE.source.model_copy(update={
    "simulator": PROFILE.source.simulator.model_copy(update={"devices": 20})})})
DAY = dt.date(2026, 3, 2)


def test_every_water_heater_sensor_has_a_resolution():
    assert {s.name: s.resolution for s in PROFILE.sensors if s.resolution} == {
        "temperature_c": 0.1, "pressure_bar": 0.01, "flow_lpm": 0.1, "power_kw": 0.01, "energy_kwh": 0.0001,
        "element_current_a": 0.01, "inlet_temp_c": 0.1,
    }


def test_landed_readings_are_multiples_of_their_resolution(tmp_path):
    paths = simulator_for(SMALL).write_landing(DAY, tmp_path)
    table = pq.read_table(paths["telemetry"])
    for sensor in SMALL.sensors:
        values = table[sensor.name].to_numpy()
        places = -Decimal(repr(sensor.resolution)).as_tuple().exponent
        # stored as the shortest decimal: 0.3, not 0.30000000000000004
        np.testing.assert_array_equal(values, np.round(values, places), err_msg=sensor.name)
        np.testing.assert_allclose(values / sensor.resolution, np.rint(values / sensor.resolution), atol=1e-6)
        assert len(np.unique(values)) > 10, sensor.name  # still a signal, not a constant


def test_rounding_keeps_the_signal_and_shrinks_the_landing_file(tmp_path):
    exact = WaterHeaterSimulator(SMALL.source.simulator)
    rounded = simulator_for(SMALL)
    a, b = exact.telemetry(DAY), rounded.telemetry(DAY)
    for sensor in SMALL.sensors:
        assert np.abs(a[sensor.name].to_numpy() - b[sensor.name].to_numpy()).max() <= sensor.resolution / 2 + 1e-9
    full = exact.write_landing(DAY, tmp_path / "exact")["telemetry"].stat().st_size
    small = rounded.write_landing(DAY, tmp_path / "rounded")["telemetry"].stat().st_size
    assert small * 4 < full


def test_resolution_of_an_unknown_sensor_is_refused():
    with pytest.raises(ValueError, match="unknown sensors"):
        WaterHeaterSimulator(SMALL.source.simulator, resolutions={"humidity": 0.1, SENSORS[0]: 0.1})


def test_resolution_must_be_positive():
    raw = yaml.safe_load((Path(__file__).parents[2] / "profiles" / "water_heaters.yaml").read_text())
    raw["sensors"][0]["resolution"] = 0
    with pytest.raises(ValueError, match="resolution"):
        FleetProfile.model_validate(raw)
