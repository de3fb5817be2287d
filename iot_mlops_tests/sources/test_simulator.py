"""The water-heater fleet simulator: determinism, schema, physics, failure modes, drift."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from iot_mlops.profiles.schema import DriftScenarios, FleetProfile, SimulatorSpec
from iot_mlops.sources import failure_modes as fm
from iot_mlops.sources.simulator import SENSORS, WaterHeaterSimulator

PROFILE = FleetProfile.model_validate(
    yaml.safe_load((Path(__file__).parents[2] / "profiles" / "water_heaters.yaml").read_text())
)
RANGES = {s.name: (s.min, s.max) for s in PROFILE.sensors}
BASE = PROFILE.source.simulator.model_copy(update={"devices": 30})
EPOCH = BASE.epoch
DAY = pd.Timedelta(days=1)
CODE = dict(zip(fm.COMPONENTS, ("E03", "E05", "E02", "E06"), strict=True))


def spec(**drift: object) -> SimulatorSpec:
    return BASE.model_copy(update={"drift": DriftScenarios(**drift)})


class Probe:
    """A simulator with per-day caches, to look at time windows that cross midnight."""

    def __init__(self, sim: WaterHeaterSimulator):
        self.sim = sim
        self.schedule = sim.failure_schedule()
        self._telemetry: dict[dt.date, pd.DataFrame] = {}
        self._events: dict[dt.date, dict[str, pd.DataFrame]] = {}

    def _days(self, start: pd.Timestamp, end: pd.Timestamp) -> list[dt.date]:
        return list(pd.date_range(start.normalize(), (end - pd.Timedelta(microseconds=1)).normalize()).date)

    def telemetry(self, device: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        frames = []
        for day in self._days(start, end):
            if day not in self._telemetry:
                self._telemetry[day] = self.sim.telemetry(day).to_pandas()
            frames.append(self._telemetry[day].query("device_id == @device"))
        frame = pd.concat(frames)
        return frame[(frame.timestamp >= start) & (frame.timestamp < end)]

    def events(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        frames = []
        for day in self._days(start, end):
            if day not in self._events:
                self._events[day] = self.sim.events(day)
            frames.append(self._events[day][table])
        frame = pd.concat(frames, ignore_index=True)
        return frame[(frame.timestamp >= start) & (frame.timestamp < end)]

    def clean_failure(self, component: str) -> tuple[object, pd.Timestamp, pd.Timestamp]:
        """The first failure of `component` whose device has no other episode from a healthy
        reference window (28 days before, as long as the build-up) to a day after the repair.
        Returns the episode and the reference window's bounds."""
        sched, buildup = self.schedule, pd.Timedelta(seconds=int(fm.BUILDUP_S[fm.COMPONENTS.index(component)]))
        failures = sched[(sched.component == component) & ~sched.averted].sort_values("failure_time")
        for row in failures.itertuples():
            ref_end = row.failure_time - 28 * DAY
            ref_start = ref_end - buildup
            others = sched[(sched.device_id == row.device_id) & (sched.index != row.Index)]
            busy = (others.buildup_start < row.end_time + DAY) & (others.end_time > ref_start - DAY)
            if ref_start > pd.Timestamp(EPOCH) and not busy.any():
                return row, ref_start, ref_end
        raise AssertionError(f"no clean {component} failure in the horizon")


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe(WaterHeaterSimulator(BASE))


def heating_ratio(frame: pd.DataFrame) -> pd.Series:
    heating = frame[frame.power_kw > 0]
    return heating.element_current_a / heating.power_kw


# ---------------------------------------------------------------- interface, schema, determinism


def test_devices_table():
    sim = WaterHeaterSimulator(BASE)
    devices = sim.devices()
    assert list(devices.columns) == ["device_id", "model", "age_years", "capacity_l", "install_date"]
    assert devices.device_id.tolist() == [f"WH-{1001 + i}" for i in range(BASE.devices)]
    assert devices.model.nunique() >= 3
    assert devices.age_years.between(0.5, 15).all()
    assert (devices.groupby("model").capacity_l.nunique() == 1).all()  # capacity follows the model
    assert all(isinstance(d, dt.date) and d < EPOCH for d in devices.install_date)
    years = [(EPOCH - d).days / 365.25 for d in devices.install_date]
    np.testing.assert_allclose(years, devices.age_years, atol=0.01)
    pd.testing.assert_frame_equal(devices, WaterHeaterSimulator(BASE).devices())


def test_telemetry_schema_and_rows():
    sim = WaterHeaterSimulator(BASE)
    day = dt.date(2026, 1, 20)
    table = sim.telemetry(day)
    expected = pa.schema(
        [("device_id", pa.string()), ("timestamp", pa.timestamp("us")), *[(s, pa.float64()) for s in SENSORS]]
    )
    assert table.schema.equals(expected)
    assert set(SENSORS) == set(PROFILE.sensor_names)
    assert table.num_rows == BASE.devices * 1440
    frame = table.to_pandas()
    per_device = frame.groupby("device_id").timestamp.agg(["count", "nunique", "min", "max"])
    assert (per_device["count"] == 1440).all() and (per_device["nunique"] == 1440).all()
    assert (per_device["min"] == pd.Timestamp(day)).all()
    assert (per_device["max"] == pd.Timestamp(day) + DAY - pd.Timedelta(minutes=1)).all()
    assert not frame[list(SENSORS)].isna().any().any()

    coarse = WaterHeaterSimulator(BASE, interval_seconds=300).telemetry(day)
    assert coarse.num_rows == BASE.devices * 288
    np.testing.assert_allclose(coarse.column("energy_kwh"), pc.multiply(coarse.column("power_kw"), 300 / 3600))
    with pytest.raises(ValueError):
        WaterHeaterSimulator(BASE, interval_seconds=7)


def test_same_spec_same_data_in_any_day_order():
    days = [dt.date(2026, 2, 10), dt.date(2026, 1, 3), dt.date(2026, 2, 11)]
    first, second = WaterHeaterSimulator(BASE), WaterHeaterSimulator(BASE)
    forward = {d: (first.telemetry(d), first.events(d)) for d in days}
    backward = {d: (second.telemetry(d), second.events(d)) for d in reversed(days)}
    for day in days:
        assert forward[day][0].equals(backward[day][0])
        for name, frame in forward[day][1].items():
            pd.testing.assert_frame_equal(frame, backward[day][1][name])
    assert first.telemetry(days[0]).equals(forward[days[0]][0])  # asking again changes nothing

    other = WaterHeaterSimulator(BASE.model_copy(update={"seed": BASE.seed + 1})).telemetry(days[0])
    assert not other.equals(forward[days[0]][0])


def test_chunking_does_not_change_the_data(monkeypatch):
    from iot_mlops.sources import simulator

    day = dt.date(2026, 2, 2)
    whole = WaterHeaterSimulator(BASE).telemetry(day)
    monkeypatch.setattr(simulator, "CHUNK", 7)
    assert WaterHeaterSimulator(BASE).telemetry(day).equals(whole)


def test_write_landing_is_byte_identical(tmp_path):
    days = [dt.date(2026, 1, 5), dt.date(2026, 1, 6)]
    written = {}
    for run, order in (("a", days), ("b", days[::-1]), ("a", days)):
        sim = WaterHeaterSimulator(BASE)
        for day in order:
            paths = sim.write_landing(day, tmp_path / run)
            written.setdefault(run, {})[day] = {name: path.read_bytes() for name, path in paths.items()}
            for name, path in paths.items():
                expected = "devices/devices.parquet" if name == "devices" else f"{name}/date={day}/{name}.parquet"
                assert path == tmp_path / run / expected
    assert written["a"] == written["b"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]

    telemetry = pq.read_table(tmp_path / "a" / f"telemetry/date={days[0]}/telemetry.parquet")
    assert telemetry.equals(WaterHeaterSimulator(BASE).telemetry(days[0]))
    devices = pd.read_parquet(tmp_path / "a" / "devices/devices.parquet")
    assert devices.device_id.tolist() == WaterHeaterSimulator(BASE).devices().device_id.tolist()


def test_empty_event_days_still_get_typed_files(tmp_path):
    sim = WaterHeaterSimulator(BASE.model_copy(update={"devices": 1}))
    day = next(d for d in pd.date_range(EPOCH, periods=60).date if not len(sim.events(d)["failures"]))
    paths = sim.write_landing(day, tmp_path)
    failures = pq.read_table(paths["failures"])
    assert failures.num_rows == 0
    assert failures.schema.names == ["device_id", "timestamp", "component"]
    assert failures.schema.field("timestamp").type == pa.timestamp("us")
    assert pq.read_table(paths["errors"]).schema.names == ["device_id", "timestamp", "error_code"]


def test_a_day_in_progress_lands_only_what_has_happened(tmp_path):
    sim = WaterHeaterSimulator(BASE)
    day = next(d for d in pd.date_range(EPOCH, periods=60).date if len(sim.events(d)["errors"]) > 3)
    errors = sim.events(day)["errors"]["timestamp"].sort_values()
    until = errors.iloc[len(errors) // 2].to_pydatetime()  # an error exactly at `until` has not happened yet
    paths = sim.write_landing(day, tmp_path, until=until)
    telemetry = pq.read_table(paths["telemetry"]).to_pandas()
    assert telemetry["timestamp"].max() < until
    assert telemetry.equals(sim.telemetry(day).to_pandas().query("timestamp < @until").reset_index(drop=True))
    landed = pq.read_table(paths["errors"]).to_pandas()["timestamp"]
    assert len(landed) == (errors < until).sum() and landed.max() < until


# ---------------------------------------------------------------- signals


def test_values_stay_inside_the_profile_ranges():
    sim = WaterHeaterSimulator(BASE.model_copy(update={"devices": 50}))
    for day in pd.date_range(EPOCH, periods=6, freq="61D").date:  # winter to autumn, healthy or not
        frame = sim.telemetry(day).to_pandas()
        for sensor, (low, high) in RANGES.items():
            assert frame[sensor].between(low, high).all(), (day, sensor, frame[sensor].min(), frame[sensor].max())


def test_daily_demand_heating_and_seasons(probe):
    day = dt.date(2026, 1, 14)
    frame = probe.sim.telemetry(day).to_pandas()
    busy = set(probe.schedule.device_id[(probe.schedule.buildup_start < pd.Timestamp(day) + DAY)
                                        & (probe.schedule.end_time > pd.Timestamp(day))])  # fmt: skip
    healthy = frame[~frame.device_id.isin(busy)]
    hour = healthy.timestamp.dt.hour
    flow = healthy.groupby(hour).flow_lpm.mean()
    assert flow[6:9].mean() > 5 * flow[1:4].mean() and flow[18:22].mean() > 5 * flow[1:4].mean()
    assert flow[6:9].mean() > flow[12:15].mean() and flow[18:22].mean() > flow[12:15].mean()

    heating = healthy[healthy.power_kw > 0]
    rated = heating.groupby("device_id").power_kw.transform("median")
    assert rated.between(2.9, 5.7).all()
    assert ((heating.power_kw / rated - 1).abs() < 0.05).all()  # the element is on or off
    assert (healthy.power_kw[healthy.power_kw <= 0] == 0).all()
    np.testing.assert_allclose(heating.element_current_a, heating.power_kw * 1000 / 240, rtol=0.06)
    np.testing.assert_allclose(healthy.energy_kwh, healthy.power_kw / 60)
    temperature = healthy.groupby("device_id").temperature_c
    assert temperature.median().between(55, 65).all()
    assert (temperature.min() < temperature.median() - 1).mean() > 0.5  # draws make dips
    assert healthy.pressure_bar.median() == pytest.approx(3.0, abs=0.4)

    summer = probe.sim.telemetry(dt.date(2026, 8, 14)).to_pandas()
    assert summer.inlet_temp_c.mean() > frame.inlet_temp_c.mean() + 5


def test_failure_rate_is_a_few_a_week():
    sim = WaterHeaterSimulator(PROFILE.source.simulator)  # the profile's 200 devices
    weeks = 8
    failures = pd.concat([sim.events(d)["failures"] for d in pd.date_range(EPOCH, periods=7 * weeks).date])
    assert 2 * weeks <= len(failures) <= 20 * weeks
    assert set(failures.component) == set(PROFILE.components)
    assert set(failures.component) == set(fm.COMPONENTS)


# ---------------------------------------------------------------- failure modes and maintenance


def degradation_checks(component: str, now: pd.DataFrame, ref: pd.DataFrame) -> None:
    if component == "heating_element":  # erratic, drifting current; less power
        assert heating_ratio(now).std() > 10 * heating_ratio(ref).std()
        assert heating_ratio(now).mean() > 1.05 * heating_ratio(ref).mean()
        assert now.power_kw[now.power_kw > 0].median() < 0.9 * ref.power_kw[ref.power_kw > 0].median()
    elif component == "tank":  # scale: lower temperature
        assert now.temperature_c.median() < ref.temperature_c.median() - 2
    elif component == "thermostat":  # overshoot and oscillation
        assert now.temperature_c.max() > ref.temperature_c.max() + 5
        assert now.temperature_c.median() > ref.temperature_c.median() + 3
    else:  # leak: pressure drops, water flows without demand
        assert now.pressure_bar.mean() < ref.pressure_bar.mean() - 0.8
        assert now.flow_lpm.min() > 0 and ref.flow_lpm.min() == 0


def recovery_checks(component: str, now: pd.DataFrame, ref: pd.DataFrame) -> None:
    if component == "heating_element":
        assert heating_ratio(now).std() < 3 * heating_ratio(ref).std()
    elif component == "tank":
        assert abs(now.temperature_c.median() - ref.temperature_c.median()) < 1.5
    elif component == "thermostat":
        assert now.temperature_c.max() < ref.temperature_c.max() + 2
    else:
        assert abs(now.pressure_bar.mean() - ref.pressure_bar.mean()) < 0.3
        assert now.flow_lpm.min() == 0


@pytest.mark.parametrize("component", fm.COMPONENTS)
def test_failures_are_preceded_by_their_code_and_degraded_signals(probe, component):
    episode, ref_start, ref_end = probe.clean_failure(component)
    device, failure = episode.device_id, episode.failure_time
    day_failures = probe.events("failures", failure.normalize(), failure.normalize() + DAY)
    assert ((day_failures.device_id == device) & (day_failures.component == component)
            & (day_failures.timestamp == failure)).sum() == 1  # fmt: skip

    errors = probe.events("errors", episode.buildup_start, failure).query("device_id == @device")
    codes = errors.error_code[errors.error_code == CODE[component]]
    assert len(codes) >= 2
    halfway = episode.buildup_start + (failure - episode.buildup_start) / 2
    late = (errors.timestamp[codes.index] >= halfway).sum()
    assert late >= len(codes) - late  # more often as the degradation grows
    healthy_errors = probe.events("errors", ref_start, ref_end).query("device_id == @device")
    assert CODE[component] not in set(healthy_errors.error_code)
    assert set(healthy_errors.error_code) <= {"E01", "E04"}

    hours = pd.Timedelta(hours=12)
    now = probe.telemetry(device, failure - hours, failure)
    ref = probe.telemetry(device, ref_end - hours, ref_end)  # same clock hours, 28 days earlier
    degradation_checks(component, now, ref)


@pytest.mark.parametrize("component", fm.COMPONENTS)
def test_maintenance_resets_degradation(probe, component):
    episode, _, ref_end = probe.clean_failure(component)
    device, failure, end = episode.device_id, episode.failure_time, episode.end_time
    assert pd.Timedelta(hours=2) <= end - failure <= pd.Timedelta(hours=8)
    maintenance = probe.events("maintenance", end.normalize(), end.normalize() + DAY)
    assert ((maintenance.device_id == device) & (maintenance.component == component)
            & (maintenance.timestamp == end)).sum() == 1  # fmt: skip
    after = probe.events("errors", end, end + DAY).query("device_id == @device")
    assert CODE[component] not in set(after.error_code)

    hours = pd.Timedelta(hours=12)
    now = probe.telemetry(device, end + pd.Timedelta(hours=1), end + pd.Timedelta(hours=1) + hours)
    ref = probe.telemetry(device, ref_end - hours, ref_end)
    recovery_checks(component, now, ref)


def test_preventive_maintenance_averts_failures():
    probe = Probe(WaterHeaterSimulator(BASE.model_copy(update={"devices": 50})))
    sched = probe.schedule
    averted = sched[sched.averted].sort_values("buildup_start").head(3)
    assert len(averted)
    for episode in averted.itertuples():
        device, component = episode.device_id, episode.component
        assert episode.buildup_start <= episode.end_time < episode.failure_time
        failures = probe.events("failures", episode.buildup_start, episode.failure_time + DAY)
        assert not ((failures.device_id == device) & (failures.component == component)).any()
        visits = probe.events("maintenance", episode.buildup_start, episode.failure_time)
        assert ((visits.device_id == device) & (visits.component == component)
                & (visits.timestamp == episode.end_time)).sum() == 1  # fmt: skip
        after = probe.events("errors", episode.end_time, episode.end_time + DAY).query("device_id == @device")
        assert CODE[component] not in set(after.error_code)

    # and conversely: a failure that happened had no maintenance of its component in its build-up
    window = (pd.Timestamp(EPOCH), pd.Timestamp(EPOCH) + 60 * DAY)
    failures = probe.events("failures", *window)
    maintenance = probe.events("maintenance", window[0] - 15 * DAY, window[1] + DAY)
    assert len(failures) >= 5
    for row in failures.itertuples():
        buildup = pd.Timedelta(seconds=int(fm.BUILDUP_S[fm.COMPONENTS.index(row.component)]))
        mine = maintenance[(maintenance.device_id == row.device_id) & (maintenance.component == row.component)]
        assert not mine.timestamp.between(row.timestamp - buildup, row.timestamp, inclusive="left").any()
        delay = mine.timestamp - row.timestamp
        assert delay.between(pd.Timedelta(hours=2), pd.Timedelta(hours=8)).any()  # the repair


# ---------------------------------------------------------------- drift scenarios


def test_no_drift_by_default():
    assert BASE.drift == DriftScenarios()
    sim = WaterHeaterSimulator(BASE)
    assert sim.recalibrated_devices == [] and len(sim.devices()) == BASE.devices


def test_seasonal_inlet_shift_from_its_day():
    start = dt.date(2026, 7, 10)
    base, drifted = WaterHeaterSimulator(BASE), WaterHeaterSimulator(spec(seasonal_inlet_shift_from=start))
    before = start - dt.timedelta(days=1)
    assert drifted.telemetry(before).equals(base.telemetry(before))
    a, b = drifted.telemetry(start).to_pandas(), base.telemetry(start).to_pandas()
    shift = DriftScenarios().seasonal_inlet_shift_c
    np.testing.assert_allclose(a.inlet_temp_c - b.inlet_temp_c, shift, atol=1e-9)
    assert a.energy_kwh.sum() > b.energy_kwh.sum()  # colder water takes more heating


def test_recalibrated_units_from_their_day():
    start, share = dt.date(2026, 3, 3), 0.2
    base = WaterHeaterSimulator(BASE)
    drifted = WaterHeaterSimulator(spec(recalibrated_units_from=start, recalibrated_share=share))
    recalibrated = drifted.recalibrated_devices
    assert len(recalibrated) == round(share * BASE.devices)
    assert recalibrated == WaterHeaterSimulator(spec(recalibrated_units_from=start)).recalibrated_devices
    before = start - dt.timedelta(days=1)
    assert drifted.telemetry(before).equals(base.telemetry(before))
    for day in (start, start + dt.timedelta(days=5)):
        a, b = drifted.telemetry(day).to_pandas(), base.telemetry(day).to_pandas()
        hit = a.device_id.isin(recalibrated)
        np.testing.assert_allclose(a.temperature_c[hit], b.temperature_c[hit] * 1.8 + 32)
        np.testing.assert_array_equal(a.temperature_c[~hit], b.temperature_c[~hit])
        assert a.temperature_c[hit].median() > RANGES["temperature_c"][1]  # °F leaves the °C range
        pd.testing.assert_frame_equal(a.drop(columns="temperature_c"), b.drop(columns="temperature_c"))


def test_new_model_batch_appears_on_its_install_day():
    start, size = dt.date(2026, 3, 5), 8
    base = WaterHeaterSimulator(BASE)
    drifted = WaterHeaterSimulator(spec(new_model_batch_from=start, new_model_batch_size=size))
    devices = drifted.devices()
    batch = devices.iloc[BASE.devices :]
    assert len(devices) == BASE.devices + size
    assert batch.device_id.tolist() == [f"WH-{1001 + BASE.devices + i}" for i in range(size)]
    assert batch.model.nunique() == 1 and batch.model.iloc[0] not in set(devices.model.iloc[: BASE.devices])
    assert (batch.install_date == start).all()
    pd.testing.assert_frame_equal(devices.iloc[: BASE.devices], base.devices())

    before = start - dt.timedelta(days=1)
    assert drifted.telemetry(before).equals(base.telemetry(before))
    for name, frame in drifted.events(before).items():
        pd.testing.assert_frame_equal(frame, base.events(before)[name])
    for day in (start, start + dt.timedelta(days=3)):
        table, fleet = drifted.telemetry(day), base.telemetry(day)
        assert table.num_rows == (BASE.devices + size) * 1440
        assert table.slice(0, fleet.num_rows).equals(fleet)  # the fleet itself is unchanged
        frame = table.to_pandas()
        new = frame[frame.device_id.isin(batch.device_id)]
        old = frame[~frame.device_id.isin(batch.device_id)]
        assert set(new.device_id) == set(batch.device_id)
        assert new.temperature_c.median() < old.temperature_c.median() - 3  # different characteristics
        assert new.pressure_bar.median() > old.pressure_bar.median() + 0.5

    sched = drifted.failure_schedule()
    assert (sched[sched.device_id.isin(batch.device_id)].buildup_start >= pd.Timestamp(start)).all()


def test_devices_not_yet_installed_have_no_rows():
    sim = WaterHeaterSimulator(BASE)
    devices = sim.devices()
    day = sorted(devices.install_date)[BASE.devices // 2]
    frame = sim.telemetry(day).to_pandas()
    installed = set(devices.device_id[devices.install_date <= day])
    assert set(frame.device_id) == installed and len(frame) == len(installed) * 1440
    assert 0 < len(installed) < BASE.devices
