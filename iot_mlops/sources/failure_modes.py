"""Failure modes of the simulated water heaters: closed-form schedules, degradation, error codes.

Every candidate failure is an *episode* of one device and component: its degradation level ramps
linearly from 0 to 1 over the component's build-up window before the failure time, stays at 1
while the device is failed, and drops back to 0 at the first maintenance of that component after
the build-up began: the repair a few hours after the failure, or an earlier preventive
maintenance, which then averts the failure. Over the last LATE_S before the failure a *late stage*
level ramps from 0 to the episode's severity (drawn per episode: some faults announce themselves
less than others). It carries the fault's own, stronger signature and most of its error codes, as
a real fault turns critical, so a warning a day ahead is learnable where the slow build-up alone
would not tell a week-old fault from one about to fail.

Schedules are drawn once, for a long horizon, from the seed alone, so any day can be simulated
without simulating the days before it. Times are integer seconds since the simulator's epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400
HOUR_S = 3_600

COMPONENTS = ("heating_element", "tank", "thermostat", "seal")
HEATING_ELEMENT, TANK, THERMOSTAT, SEAL = range(len(COMPONENTS))
BUILDUP_S = np.array([3 * DAY_S, 14 * DAY_S, 2 * DAY_S, 36 * HOUR_S], dtype=np.int64)
ANNUAL_FAILURE_RATE = np.array([0.7, 0.5, 0.55, 0.45])  # per device of average age and model
PREVENTIVE_MEAN_DAYS = 270.0  # mean time between preventive visits, per device and component
REPAIR_DELAY_S = (2 * HOUR_S, 8 * HOUR_S)
HORIZON_S = 1826 * DAY_S  # five years of schedule from each device's origin
MAX_DRAWS = 48  # candidate draws per device and component: far more than the horizon needs

ERROR_CODES = ("E01", "E02", "E03", "E04", "E05", "E06")
FAILURE_CODE = np.array([ERROR_CODES.index(c) for c in ("E03", "E05", "E02", "E06")])
BACKGROUND_CODE = np.array([ERROR_CODES.index("E01"), ERROR_CODES.index("E04")])
BACKGROUND_PER_DAY = np.array([1 / 30, 1 / 45])  # random errors per device and day
LATE_S = 30 * HOUR_S  # the late stage: the last hours before a failure
MIN_SEVERITY = 0.35  # some faults announce themselves less than others
EARLY_ERROR_P = 0.02  # hourly probability of a component's error code at full degradation, before the late stage
LATE_ERROR_P = 0.4  # and its rise over the late stage

_ROW = np.int64(2**40)  # key stride: (row, time) pairs sort as one int64 array

Rng = Callable[[int], np.random.Generator]


@dataclass(frozen=True)
class Schedule:
    """Degradation episodes (sorted by device, component, start) and maintenance (by time)."""

    device: np.ndarray
    component: np.ndarray
    start: np.ndarray
    failure: np.ndarray
    end: np.ndarray
    averted: np.ndarray
    severity: np.ndarray  # how loudly the late stage announces the failure, in [MIN_SEVERITY, 1]
    maintenance_device: np.ndarray
    maintenance_component: np.ndarray
    maintenance_time: np.ndarray

    def overlapping(self, t0: int, t1: int) -> np.ndarray:
        """Indexes of the episodes whose degradation touches [t0, t1)."""
        return np.flatnonzero((self.start < t1) & (self.end > t0))

    def failures_between(self, t0: int, t1: int) -> np.ndarray:
        """Indexes of the failures (not averted) at a time in [t0, t1), by time."""
        idx = np.flatnonzero(~self.averted & (self.failure >= t0) & (self.failure < t1))
        return idx[np.lexsort((self.component[idx], self.device[idx], self.failure[idx]))]

    def maintenance_between(self, t0: int, t1: int) -> slice:
        lo, hi = np.searchsorted(self.maintenance_time, [t0, t1], side="left")
        return slice(int(lo), int(hi))

    @staticmethod
    def concat(parts: list[Schedule]) -> Schedule:
        fields = {k: np.concatenate([getattr(p, k) for p in parts]) for k in Schedule.__dataclass_fields__}
        order = np.lexsort((fields["maintenance_component"], fields["maintenance_device"], fields["maintenance_time"]))
        for key in ("maintenance_device", "maintenance_component", "maintenance_time"):
            fields[key] = fields[key][order]
        return Schedule(**fields)


def build_schedule(
    rng: Rng, origin_s: np.ndarray, rate_factor: np.ndarray, first_device: int = 0, warm: bool = False
) -> Schedule:
    """Closed-form failures, repairs and preventive maintenance for devices starting at `origin_s`.

    `rng(k)` returns the k-th independent generator of this device group, so each draw is a
    row-major (device, component, draw) array and a device's schedule does not depend on the
    size of its group. Consecutive failures of one component are at least its build-up window
    plus a day apart, so its episodes never overlap. New devices (`warm` False) start healthy;
    a `warm` group is already in service at its origin: its first failures can come at once,
    their build-up having begun before the origin.
    """
    n, c = len(origin_s), len(COMPONENTS)
    mean_gap = 365.25 * DAY_S / (ANNUAL_FAILURE_RATE[None, :] * np.asarray(rate_factor)[:, None])
    gaps = rng(0).exponential(size=(n, c, MAX_DRAWS)) * mean_gap[..., None]
    gaps += (BUILDUP_S + DAY_S)[None, :, None]
    if warm:
        gaps[:, :, 0] -= (BUILDUP_S + DAY_S)[None, :] * rng(3).random((n, c))
    failure_rel = np.cumsum(gaps, axis=2).astype(np.int64)
    repair = rng(1).integers(REPAIR_DELAY_S[0], REPAIR_DELAY_S[1], size=(n, c, MAX_DRAWS), endpoint=True)
    preventive_rel = np.cumsum(rng(2).exponential(PREVENTIVE_MEAN_DAYS * DAY_S, size=(n, c, MAX_DRAWS)), axis=2)
    preventive_rel = preventive_rel.astype(np.int64)
    row = np.arange(n * c, dtype=np.int64).reshape(n, c, 1)

    keep_pm = preventive_rel < HORIZON_S
    pm_key = (row * _ROW + preventive_rel)[keep_pm]  # sorted: by row, then time
    keep = failure_rel < HORIZON_S
    rows = np.broadcast_to(row, failure_rel.shape)[keep]
    fail_rel, repair = failure_rel[keep], repair[keep]
    severity = (MIN_SEVERITY + (1 - MIN_SEVERITY) * rng(4).random((n, c, MAX_DRAWS)))[keep]
    comp = rows % c
    start_rel = fail_rel - BUILDUP_S[comp]

    # first preventive maintenance of the same device and component at or after the build-up start
    next_pm = np.full(len(fail_rel), np.iinfo(np.int64).max)
    if len(pm_key):
        pos = np.minimum(np.searchsorted(pm_key, rows * _ROW + start_rel), len(pm_key) - 1)
        found = pm_key[pos]
        same = (found // _ROW == rows) & (found % _ROW >= start_rel)
        next_pm[same] = found[same] % _ROW
    end_rel = np.minimum(fail_rel + repair, next_pm)
    averted = next_pm < fail_rel

    device = rows // c
    origin = np.asarray(origin_s, dtype=np.int64)[device]
    pm_rows = pm_key // _ROW
    pm_device = pm_rows // c
    maint_device = np.concatenate([device[~averted], pm_device]) + first_device
    maint_component = np.concatenate([comp[~averted], pm_rows % c])
    pm_time = np.asarray(origin_s, dtype=np.int64)[pm_device] + pm_key % _ROW
    maint_time = np.concatenate([(origin + fail_rel + repair)[~averted], pm_time])
    order = np.lexsort((maint_component, maint_device, maint_time))
    return Schedule(
        device=device + first_device,
        component=comp,
        start=origin + start_rel,
        failure=origin + fail_rel,
        end=origin + end_rel,
        averted=averted,
        severity=severity,
        maintenance_device=maint_device[order],
        maintenance_component=maint_component[order],
        maintenance_time=maint_time[order],
    )


def _levels(schedule: Schedule, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Degradation level of episodes `idx` at times `t`, (times,) or (episodes, times)."""
    t = np.atleast_2d(t)
    start = schedule.start[idx][:, None]
    inside = (t >= start) & (t < schedule.end[idx][:, None])
    ramp = (t - start) / BUILDUP_S[schedule.component[idx]][:, None]
    return np.clip(ramp, 0.0, 1.0) * inside


def _late(schedule: Schedule, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Late-stage level of episodes `idx` at times `t`: 0 until LATE_S before the failure, its severity from it."""
    t = np.atleast_2d(t)
    inside = (t >= schedule.start[idx][:, None]) & (t < schedule.end[idx][:, None])
    ramp = np.clip(1 - (schedule.failure[idx][:, None] - t) / LATE_S, 0.0, 1.0)
    return ramp * inside * schedule.severity[idx][:, None]


def degradation(schedule: Schedule, t: np.ndarray, lo: int, hi: int) -> list[tuple[object, object, object]]:
    """Per component, (level, failed, late) for devices [lo, hi) at sample times `t` (seconds).

    Each is a (devices, samples) float array, or the scalar 0.0 when no device in the range
    degrades that day (so healthy chunks cost nothing).
    """
    idx = schedule.overlapping(int(t[0]), int(t[-1]) + 1)
    idx = idx[(schedule.device[idx] >= lo) & (schedule.device[idx] < hi)]
    out: list[tuple[object, object, object]] = []
    for comp in range(len(COMPONENTS)):
        sel = idx[schedule.component[idx] == comp]
        if not len(sel):
            out.append((0.0, 0.0, 0.0))
            continue
        level, failed, late = (np.zeros((hi - lo, len(t))) for _ in range(3))
        rows = schedule.device[sel] - lo
        levels = _levels(schedule, sel, t)
        np.add.at(level, rows, levels)
        np.add.at(failed, rows, (t[None, :] >= schedule.failure[sel][:, None]) * (levels > 0))
        np.add.at(late, rows, _late(schedule, sel, t))
        out.append((level, failed, late))
    return out


def error_events(
    schedule: Schedule, day_start: int, active: np.ndarray, rng: np.random.Generator, lo: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(device, time, code index) of the errors of devices lo.. (`active` is their mask) in a day.

    Background codes come at a low constant rate for active devices; a degrading component
    raises its code each hour with probability EARLY_ERROR_P * level + LATE_ERROR_P * late**1.5. Sorted by time.
    """
    counts = rng.poisson(BACKGROUND_PER_DAY, size=(len(active), len(BACKGROUND_PER_DAY)))
    counts[~active] = 0
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    bg_device = lo + flat // counts.shape[1]
    bg_code = BACKGROUND_CODE[flat % counts.shape[1]]
    bg_time = day_start + rng.integers(0, DAY_S, size=len(flat))

    idx = schedule.overlapping(day_start, day_start + DAY_S)
    idx = idx[(schedule.device[idx] >= lo) & (schedule.device[idx] < lo + len(active))]
    # one candidate time per episode and hour: rare during the build-up, frequent in the late stage
    times = day_start + HOUR_S * np.arange(24) + rng.integers(0, HOUR_S, size=(len(idx), 24))
    p = EARLY_ERROR_P * _levels(schedule, idx, times) + LATE_ERROR_P * _late(schedule, idx, times) ** 1.5
    episode, hour = np.nonzero(rng.random(p.shape) < p)
    deg_time = times[episode, hour]
    deg_device = schedule.device[idx][episode]
    deg_code = FAILURE_CODE[schedule.component[idx][episode]]

    device = np.concatenate([bg_device, deg_device])
    time = np.concatenate([bg_time, deg_time])
    code = np.concatenate([bg_code, deg_code])
    order = np.lexsort((code, device, time))
    return device[order], time[order], code[order]
