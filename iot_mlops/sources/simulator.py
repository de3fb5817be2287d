"""Deterministic, vectorized simulator of a connected water-heater fleet.

Each device is a tank with an electric element under thermostat control. Hot-water draws follow
a daily demand profile (morning and evening peaks); they add a heat deficit that the element
works off at its rated power, so the tank temperature dips and recovers, and the element's
power, energy and current follow. The deficit is a Lindley recursion, D_t = max(0, D_t-1 + X_t),
computed in closed form with cumulative sums and minima, so a whole day of a whole fleet is a
handful of array operations. Standby losses come back as short, full-power reheat pulses.

Failure modes (see `failure_modes`) degrade the signals during their build-up, and more in
their late stage, the day or so before the failure, each with a signature of its own: a
burning-out element draws more current per kW, more erratically, and heats less; scale lowers
heat transfer (longer heating, lower temperature), and late on kettles: pressure pulses and a
jittery temperature while the element heats; a faulty thermostat overshoots and oscillates,
more as it nears failure; a leaking seal loses pressure and shows a base flow without demand.

Determinism: device attributes and failure schedules come from generators seeded by
(seed, purpose, device group); each day's demand, noise and errors from generators seeded by
(seed, purpose, day ordinal, device group[, sensor]). A day is the same whichever days were
simulated before it, in whatever order, and whatever the chunk size; the new-model batch has
streams of its own, so adding it leaves the original fleet's data unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_mlops.lake.atomic import atomic_write
from iot_mlops.profiles.schema import SimulatorSpec
from iot_mlops.sources import failure_modes as fm

SENSORS = ("temperature_c", "pressure_bar", "flow_lpm", "power_kw", "energy_kwh", "element_current_a", "inlet_temp_c")
TELEMETRY_SCHEMA = pa.schema(
    [("device_id", pa.string()), ("timestamp", pa.timestamp("us")), *[(s, pa.float64()) for s in SENSORS]]
)
EVENT_COLUMNS = {"failures": "component", "maintenance": "component", "errors": "error_code"}
EVENT_SCHEMAS = {
    name: pa.schema([("device_id", pa.string()), ("timestamp", pa.timestamp("us")), (col, pa.string())])
    for name, col in EVENT_COLUMNS.items()
}
DEVICE_SCHEMA = pa.schema(
    [
        ("device_id", pa.string()),
        ("model", pa.string()),
        ("age_years", pa.float64()),
        ("capacity_l", pa.float64()),
        ("install_date", pa.date32()),
    ]
)
LANDING_PATHS = {
    "telemetry": "telemetry/date={date}/telemetry.parquet",
    "failures": "failures/date={date}/failures.parquet",
    "maintenance": "maintenance/date={date}/maintenance.parquet",
    "errors": "errors/date={date}/errors.parquet",
    "devices": "devices/devices.parquet",
}


@dataclass(frozen=True)
class HeaterModel:
    name: str
    capacity_l: float
    element_kw: float
    setpoint_c: float
    pressure_bar: float
    standby_factor: float  # insulation: multiplies standby losses
    failure_factor: float  # multiplies failure rates
    share: float  # share of the original fleet


FLEET_MODELS = (
    HeaterModel("AquaBasic-50", 50.0, 3.0, 60.0, 3.0, 1.0, 1.15, 0.30),
    HeaterModel("AquaPro-80", 80.0, 4.0, 60.0, 3.0, 1.0, 1.0, 0.35),
    HeaterModel("ThermaMax-120", 120.0, 4.5, 62.0, 3.2, 0.9, 0.9, 0.25),
    HeaterModel("ThermaMax-200", 200.0, 5.5, 62.0, 3.2, 0.9, 0.85, 0.10),
)
NEW_MODEL = HeaterModel("EcoHeat-X", 150.0, 3.5, 52.0, 4.2, 0.5, 0.5, 0.0)  # eco setpoint, high pressure
MODELS = (*FLEET_MODELS, NEW_MODEL)

KJ_PER_L_K = 4.186  # heat capacity of a litre of water
VOLTS = 240.0
DRAWS_PER_DAY = 8.0  # for a usage factor of 1
CHUNK = 128  # devices simulated together: bounds the working memory (the data do not depend on it)
_ATTRIBUTES, _SCHEDULE, _DEMAND, _NOISE, _ERRORS = range(1, 6)
_PHYSICAL = {  # what the sensors can physically report (inside the profile's valid ranges)
    "temperature_c": (0.5, 94.5),
    "pressure_bar": (0.05, 11.9),
    "flow_lpm": (0.0, 59.9),
    "element_current_a": (0.0, 59.9),
    "inlet_temp_c": (0.5, 39.5),
}


def _as_day(day: dt.date | str) -> dt.date:
    if isinstance(day, str):
        return dt.date.fromisoformat(day)
    return day.date() if isinstance(day, dt.datetime) else day


class WaterHeaterSimulator:
    """A fleet of `spec.devices` water heaters (plus the drift scenario's new batch).

    `resolutions` (sensor -> smallest step it reports): readings are rounded to them, as real sensors report.
    """

    def __init__(self, spec: SimulatorSpec, interval_seconds: int = 60, resolutions: Mapping[str, float] | None = None):
        if interval_seconds <= 0 or fm.DAY_S % interval_seconds:
            raise ValueError(f"interval_seconds must divide a day, got {interval_seconds}")
        unknown = set(resolutions or {}) - set(SENSORS)
        if unknown:
            raise ValueError(f"resolutions of unknown sensors: {sorted(unknown)}")
        self.spec = spec
        self.resolutions = {name: float(step) for name, step in (resolutions or {}).items()}
        self.interval_seconds = int(interval_seconds)
        self.samples_per_day = fm.DAY_S // self.interval_seconds
        self._seed = spec.seed % 2**63
        drift = spec.drift
        n_fleet = spec.devices
        n_batch = drift.new_model_batch_size if drift.new_model_batch_from is not None else 0
        self.n_fleet, self.n_devices = n_fleet, n_fleet + n_batch

        fleet_u = self._rng(_ATTRIBUTES, 0).random((n_fleet, 12))
        batch_u = self._rng(_ATTRIBUTES, 1).random((n_batch, 12))
        cum_share = np.cumsum([m.share for m in FLEET_MODELS])
        model = np.concatenate(
            [np.minimum(np.searchsorted(cum_share / cum_share[-1], fleet_u[:, 0], side="right"), len(FLEET_MODELS) - 1),
             np.full(n_batch, MODELS.index(NEW_MODEL))]
        )  # fmt: skip
        age = np.concatenate([np.round(0.5 + 14.5 * fleet_u[:, 1], 2), np.zeros(n_batch)])
        fleet_install = [spec.epoch - dt.timedelta(days=int(round(a * 365.25))) for a in age[:n_fleet]]
        self._install = fleet_install + [drift.new_model_batch_from] * n_batch
        self._install_ordinal = np.array([d.toordinal() for d in self._install], dtype=np.int64)
        self.device_ids = [f"WH-{1001 + i}" for i in range(self.n_devices)]
        self._model, self._age = model, age
        self._init_physics(np.concatenate([fleet_u, batch_u]))

        # recalibrated devices: the share of the fleet with the lowest draw of column 11
        k = int(round(drift.recalibrated_share * n_fleet)) if drift.recalibrated_units_from is not None else 0
        self._recalibrated = np.zeros(self.n_devices, dtype=bool)
        self._recalibrated[np.argsort(fleet_u[:, 11], kind="stable")[:k]] = True

        factor = np.array([MODELS[m].failure_factor for m in model]) * (0.5 + 0.065 * age)
        origin = (self._install_ordinal - spec.epoch.toordinal()) * fm.DAY_S
        origin[:n_fleet] = 0  # the fleet's schedules start at the epoch
        self._groups = [(0, n_fleet), (n_fleet, self.n_devices)]  # the fleet, the new-model batch
        parts = [
            fm.build_schedule(lambda k, g=g: self._rng(_SCHEDULE, g, k), origin[lo:hi], factor[lo:hi], lo, warm=g == 0)
            for g, (lo, hi) in enumerate(self._groups)
        ]
        self.schedule = fm.Schedule.concat(parts)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, *key])

    def _init_physics(self, u: np.ndarray) -> None:
        models = [MODELS[m] for m in self._model]
        cap = np.array([m.capacity_l for m in models])
        self._capacity = cap
        self._element_kw = np.array([m.element_kw for m in models])
        self._setpoint = np.array([m.setpoint_c for m in models]) + (u[:, 2] - 0.5) * 3.0
        self._pressure = np.array([m.pressure_bar for m in models]) + (u[:, 3] - 0.5) * 0.6
        self._usage = (0.4 + 1.2 * u[:, 4]) * np.sqrt(cap / 80.0)
        self._inlet_offset = (u[:, 5] - 0.5) * 4.0
        standby_kw = (0.02 + 0.0006 * cap * (1 + self._age / 10)) * np.array([m.standby_factor for m in models])
        dt_min = self.interval_seconds / 60
        # standby losses return as one lump every `period` samples, reheated at full power
        self._pulse_period = np.clip(np.rint(self._element_kw * 0.98 / standby_kw / dt_min), 2, self.samples_per_day)
        self._pulse_phase = np.floor(u[:, 6] * self._pulse_period)
        self._pulse_kj = standby_kw * 60 * dt_min * self._pulse_period
        self._thermostat_period_min = 20 + 25 * u[:, 7]
        self._thermostat_phase = 2 * np.pi * u[:, 8]
        self._leak_lpm = 0.25 + 0.35 * u[:, 9]
        self._current_gain = 1 + (u[:, 10] - 0.5) * 0.04
        t_hours = np.arange(self.samples_per_day) * self.interval_seconds / 3600
        self._demand_cdf = [_demand_cdf(t_hours, weekend) for weekend in (False, True)]

    # ------------------------------------------------------------------ public interface

    def devices(self) -> pd.DataFrame:
        """device_id, model, age_years (at the epoch; 0 for the new batch), capacity_l, install_date."""
        return pd.DataFrame(
            {
                "device_id": self.device_ids,
                "model": [MODELS[m].name for m in self._model],
                "age_years": self._age.astype(float),
                "capacity_l": self._capacity.astype(float),
                "install_date": self._install,
            }
        )

    @property
    def recalibrated_devices(self) -> list[str]:
        """Devices that report temperature_c in °F from `drift.recalibrated_units_from`."""
        return [self.device_ids[i] for i in np.flatnonzero(self._recalibrated)]

    def failure_schedule(self) -> pd.DataFrame:
        """Every degradation episode of the horizon (ground truth, for inspection and tests).

        device_id, component, buildup_start, failure_time, end_time (degradation back to 0 at
        the first maintenance), averted (a preventive maintenance came before the failure),
        severity (how strongly its late stage shows).
        """
        sched, epoch = self.schedule, pd.Timestamp(self.spec.epoch)
        stamp = lambda s: (epoch + pd.to_timedelta(s, unit="s")).astype("datetime64[us]")  # noqa: E731
        return pd.DataFrame(
            {
                "device_id": np.array(self.device_ids, dtype=object)[sched.device],
                "component": np.array(fm.COMPONENTS, dtype=object)[sched.component],
                "buildup_start": stamp(sched.start),
                "failure_time": stamp(sched.failure),
                "end_time": stamp(sched.end),
                "averted": sched.averted,
                "severity": sched.severity,
            }
        )

    def active(self, day: dt.date | str) -> np.ndarray:
        """Mask of the devices installed on or before `day`."""
        return self._install_ordinal <= _as_day(day).toordinal()

    def telemetry(self, day: dt.date | str) -> pa.Table:
        """One row per installed device and sample of [day 00:00, day+1 00:00) UTC, by device then time."""
        day = _as_day(day)
        n_samples, active = self.samples_per_day, self.active(day)
        n_active = int(active.sum())
        out = {name: np.empty(n_active * n_samples) for name in SENSORS}
        pos = 0
        for group, (first, last) in enumerate(self._groups):
            if not active[first:last].any():
                continue
            # each group has its own streams: the new batch leaves the fleet's data unchanged
            draws = self._draws(day, group, first, last)
            noise = {name: self._rng(_NOISE, day.toordinal(), group, i) for i, name in enumerate(SENSORS)}
            for lo in range(first, last, CHUNK):
                hi = min(lo + CHUNK, last)
                chunk = self._simulate_chunk(day, lo, hi, draws, noise)
                rows = active[lo:hi]
                size = int(rows.sum()) * n_samples
                for name in SENSORS:
                    np.compress(rows, chunk[name], axis=0, out=out[name][pos : pos + size].reshape(-1, n_samples))
                pos += size
        day_us = (day - dt.date(1970, 1, 1)).days * fm.DAY_S * 1_000_000
        stamps = day_us + np.arange(n_samples, dtype=np.int64) * self.interval_seconds * 1_000_000
        ids = pa.array([self.device_ids[i] for i in np.flatnonzero(active)], pa.string())
        columns = [
            pc.take(ids, pa.array(np.repeat(np.arange(n_active, dtype=np.int32), n_samples))),
            pa.array(np.tile(stamps, n_active).view("datetime64[us]"), pa.timestamp("us")),
            *[pa.array(out[name], pa.float64()) for name in SENSORS],
        ]
        return pa.Table.from_arrays(columns, schema=TELEMETRY_SCHEMA)

    def events(self, day: dt.date | str) -> dict[str, pd.DataFrame]:
        """The day's failures, maintenance (repairs and preventive) and error codes, by time."""
        day = _as_day(day)
        t0 = (day - self.spec.epoch).days * fm.DAY_S
        sched = self.schedule
        fail = sched.failures_between(t0, t0 + fm.DAY_S)
        maint = sched.maintenance_between(t0, t0 + fm.DAY_S)
        active = self.active(day)
        errors = [
            fm.error_events(sched, t0, active[lo:hi], self._rng(_ERRORS, day.toordinal(), group), lo)
            for group, (lo, hi) in enumerate(self._groups)
        ]
        err_device, err_time, err_code = (np.concatenate(parts) for parts in zip(*errors))
        order = np.lexsort((err_code, err_device, err_time))
        err_device, err_time, err_code = err_device[order], err_time[order], err_code[order]
        parts = {
            "failures": (sched.device[fail], sched.failure[fail], np.array(fm.COMPONENTS)[sched.component[fail]]),
            "maintenance": (
                sched.maintenance_device[maint],
                sched.maintenance_time[maint],
                np.array(fm.COMPONENTS)[sched.maintenance_component[maint]],
            ),
            "errors": (err_device, err_time, np.array(fm.ERROR_CODES)[err_code]),
        }
        epoch = pd.Timestamp(self.spec.epoch)
        ids = np.array(self.device_ids, dtype=object)
        return {
            name: pd.DataFrame(
                {
                    "device_id": ids[device],
                    "timestamp": (epoch + pd.to_timedelta(time, unit="s")).astype("datetime64[us]"),
                    EVENT_COLUMNS[name]: np.asarray(value, dtype=object),
                }
            )
            for name, (device, time, value) in parts.items()
        }

    def write_landing(self, day: dt.date | str, landing_dir: Path, until: dt.datetime | None = None) -> dict[str, Path]:
        """Write the day's landing Parquet files (and the device table) atomically; name -> path.

        With `until` (naive UTC), only readings and events before it: a day in progress lands as far as it has happened.
        """
        day = _as_day(day)
        landing_dir = Path(landing_dir)
        telemetry = self.telemetry(day)
        if until is not None:
            telemetry = telemetry.filter(pc.less(telemetry["timestamp"], pa.scalar(until, pa.timestamp("us"))))
        tables = {"telemetry": telemetry}
        for name, frame in self.events(day).items():
            frame = frame if until is None else frame[frame["timestamp"] < until]
            tables[name] = pa.Table.from_pandas(frame, schema=EVENT_SCHEMAS[name], preserve_index=False)
        tables["devices"] = pa.Table.from_pandas(self.devices(), schema=DEVICE_SCHEMA, preserve_index=False)
        written = {}
        for name, table in tables.items():
            table = table.replace_schema_metadata(None)
            target = landing_dir / LANDING_PATHS[name].format(date=day.isoformat())
            written[name] = atomic_write(target, lambda tmp, t=table: pq.write_table(t, tmp, compression="zstd"))
        return written

    # ------------------------------------------------------------------ physics

    def _draws(self, day: dt.date, group: int, first: int, last: int) -> tuple[np.ndarray, ...]:
        """The day's hot-water draws of devices [first, last): (device, first sample, end sample, centi-l/min)."""
        rng = self._rng(_DEMAND, day.toordinal(), group)
        weekend = day.weekday() >= 5
        counts = rng.poisson(self._usage[first:last] * DRAWS_PER_DAY * (1.15 if weekend else 1.0))
        device = np.repeat(np.arange(first, last), counts)
        u = rng.random((len(device), 4))
        cdf = self._demand_cdf[weekend]
        start = np.minimum(np.searchsorted(cdf, u[:, 0], side="right"), self.samples_per_day - 1)
        kind = np.select([u[:, 1] < 0.65, u[:, 1] < 0.95], [0, 1], 2)  # tap, shower, bath (hot share)
        minutes = np.array([1.0, 3.0, 4.0])[kind] + np.array([2.0, 5.0, 4.0])[kind] * u[:, 2]
        lpm = np.array([1.5, 3.5, 8.0])[kind] + np.array([3.0, 2.5, 3.0])[kind] * u[:, 3]
        length = np.maximum(1, np.rint(minutes * 60 / self.interval_seconds)).astype(np.int64)
        end = np.minimum(start + length, self.samples_per_day)
        return device, start, end, np.rint(lpm * 100)

    def _simulate_chunk(self, day: dt.date, lo: int, hi: int, draws: tuple, noise: dict) -> dict:
        """Sensors of devices [lo, hi) for the day, (devices, samples) each; `noise` has one
        generator per sensor, so one signal's noise does not shift when another's changes."""
        n, n_samples = hi - lo, self.samples_per_day
        dt_min = self.interval_seconds / 60
        sample = np.arange(n_samples)
        t_min = sample * dt_min
        t_s = (day - self.spec.epoch).days * fm.DAY_S + sample * self.interval_seconds
        p = slice(lo, hi)
        col = lambda a: a[p][:, None]  # noqa: E731 - per-device parameter as a column

        degradation = fm.degradation(self.schedule, t_s, lo, hi)
        (deg_e, fail_e, late_e), (deg_t, fail_t, late_t), (deg_h, fail_h, late_h), (deg_s, fail_s, late_s) = degradation
        normal = lambda name: noise[name].standard_normal((n, n_samples), dtype=np.float32)  # noqa: E731

        # water in: demand draws (exact sums in centi-l/min) plus a leak's base flow
        device, start, end, centi = draws
        a, b = np.searchsorted(device, [lo, hi])
        width = n_samples + 1
        key = (device[a:b] - lo) * width
        diff = np.bincount(key + start[a:b], centi[a:b], n * width) - np.bincount(key + end[a:b], centi[a:b], n * width)
        demand = np.cumsum(diff.reshape(n, width)[:, :n_samples], axis=1) / 100
        leak = (0.4 * deg_s + 0.6 * late_s) * col(self._leak_lpm) + 0.5 * fail_s

        shift = 0.0
        drift = self.spec.drift
        if drift.seasonal_inlet_shift_from is not None and day >= drift.seasonal_inlet_shift_from:
            shift = drift.seasonal_inlet_shift_c
        season = 2 * np.pi * (day.toordinal() - dt.date(2000, 2, 14).toordinal()) / 365.2425
        diurnal = 0.4 * np.sin(2 * np.pi * (t_min / 60 - 9) / 24)
        inlet = np.maximum(12.0 - 5.0 * np.cos(season) + shift + col(self._inlet_offset) + diurnal, 0.5)

        # heat deficit (kJ): draws and standby lumps in, element heat out (Lindley recursion)
        setpoint = col(self._setpoint)
        pulse = np.remainder(sample[None, :] + col(self._pulse_phase), col(self._pulse_period), dtype=np.float64)
        heat_in = (demand + leak) * dt_min * np.maximum(setpoint - inlet, 5.0) * KJ_PER_L_K
        heat_in += (pulse == 0) * col(self._pulse_kj)
        electric = col(self._element_kw) * (1 - 0.3 * deg_e) * (1 - fail_e)  # kW the element draws
        efficiency = 0.98 * (1 - 0.4 * deg_t - 0.2 * late_t - 0.1 * fail_t)  # scale insulates the element
        capacity = electric * efficiency * 60 * dt_min  # kJ per sample
        running = np.cumsum(heat_in - capacity, axis=1)
        deficit = running - np.minimum(np.minimum.accumulate(running, axis=1), 0.0)
        previous = np.concatenate([np.zeros((n, 1)), deficit[:, :-1]], axis=1)
        heated = previous + heat_in - deficit
        duty = np.clip(np.divide(heated, capacity, out=np.zeros_like(heated), where=capacity > 0), 0.0, 1.0)

        overshoot = 0.0
        if not np.isscalar(deg_h):  # a faulty thermostat overshoots, oscillates and overheats
            theta = 2 * np.pi * t_min[None, :] / col(self._thermostat_period_min) + col(self._thermostat_phase)
            overshoot = (deg_h + late_h) * (2.5 + 2.0 * np.sin(theta)) + 8.0 * fail_h
            stuck = (deg_h > 0) & (np.cos(theta) > 1 - 0.6 * deg_h) & (electric > 0)
            duty = np.maximum(duty, stuck)
        # the thermostat switches the element fully on or off: whole samples with the same energy
        switched = np.floor(np.cumsum(duty, axis=1) + 1e-9)
        duty = np.diff(switched, axis=1, prepend=0.0)
        on = duty > 0  # noise only where it shows: on samples, flowing samples
        power = electric * duty
        power[on] *= 1 + 0.01 * noise["power_kw"].standard_normal(int(on.sum()))  # supply voltage
        current = power * (1000 / VOLTS) * col(self._current_gain) * (1 + 0.1 * deg_e + 0.4 * late_e)
        erratic = np.broadcast_to(0.05 + 1.5 * deg_e**1.5 + 3.5 * late_e**1.5, current.shape)[on]
        current[on] += erratic * noise["element_current_a"].standard_normal(len(erratic))
        flowing = demand > 0
        flow = demand + leak
        flow[flowing] += demand[flowing] * 0.03 * noise["flow_lpm"].standard_normal(int(flowing.sum()))

        # a stratified tank: the sensor barely moves for small draws, falls fast as the tank empties
        volume_kj = col(self._capacity) * KJ_PER_L_K  # kJ per °C of a full tank
        rise = np.maximum(setpoint - inlet, 1.0)
        cold_share = np.minimum(deficit / (volume_kj * rise), 1.0)
        sawtooth = pulse / col(self._pulse_period) * col(self._pulse_kj) / volume_kj
        temperature = setpoint - rise * cold_share * np.sqrt(cold_share) - sawtooth - 4.0 * deg_t - 3.0 * fail_t
        jitter = 0.12 + 1.5 * late_t * duty  # scale kettles: the sensor jitters while the element heats
        temperature = np.maximum(temperature + overshoot + jitter * normal("temperature_c"), inlet + 0.5)

        pressure = col(self._pressure) + 0.12 * np.cos(2 * np.pi * (t_min / 60 - 3) / 24) - 0.012 * demand
        z = normal("pressure_bar")
        pressure = pressure + 0.08 * duty - 0.8 * deg_s - 0.8 * late_s - 0.8 * fail_s + 0.03 * (1 + 2 * deg_s) * z
        # kettling: steam bubbles form and collapse while heating, the pressure pulses around its level
        pressure = pressure + 1.2 * late_t * duty * z

        result = {
            "temperature_c": temperature,
            "pressure_bar": pressure,
            "flow_lpm": flow,
            "power_kw": power,
            "energy_kwh": power * (self.interval_seconds / 3600),
            "element_current_a": current,
            "inlet_temp_c": inlet + 0.08 * normal("inlet_temp_c"),
        }
        for name, (low, high) in _PHYSICAL.items():
            result[name] = np.clip(result[name], low, high)
        if drift.recalibrated_units_from is not None and day >= drift.recalibrated_units_from:
            recal = self._recalibrated[p]
            result["temperature_c"][recal] = result["temperature_c"][recal] * 1.8 + 32.0
        for name, step in self.resolutions.items():
            # Full-precision noise digits made the landing and lake files ~9x larger than rounded readings.
            result[name] = np.round(np.round(result[name] / step) * step, _decimals(step))
        return result


def _decimals(step: float) -> int:
    """Decimal places of a resolution, so readings in 0.1 steps are 0.3, not 0.30000000000000004."""
    return max(0, -Decimal(repr(step)).normalize().as_tuple().exponent)


def _demand_cdf(t_hours: np.ndarray, weekend: bool) -> np.ndarray:
    """Cumulative share of a day's hot-water draws starting by each sample."""
    bump = lambda mu, sd: np.exp(-0.5 * ((t_hours - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))  # noqa: E731
    daytime = ((t_hours >= 7) & (t_hours < 22)) / 15.0
    density = 0.33 * bump(8.75 if weekend else 7.0, 1.0) + 0.37 * bump(19.5, 1.5) + 0.25 * daytime + 0.05 / 24
    cdf = np.cumsum(density)
    return cdf / cdf[-1]
