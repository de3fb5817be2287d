"""Device-relative features: each sensor's step mean against the device's own trailing baseline and against its cohort.

The z-score compares the newest step mean (bucket k, the interval [t - step, t)) with the
device's step means over the baseline window, which ends `baseline_gap` before that bucket:
buckets k - gap - baseline .. k - gap - 1 (in steps). A build-up shorter than the gap is thus
measured against a baseline it has not yet moved. Step means before the run's first day are
read from the stored feature partitions (their one-step mean column holds exactly these
values), so a run reads no more raw telemetry than its windows need. The baseline sums exact
integers (step means in millionths), so a range run and day-by-day runs give the same bits and
a constant baseline has variance exactly 0. A baseline of fewer than half its steps (a new
device) or of zero variance gives 0; the z-score is clipped to +-Z_LIMIT.

The cohort feature is the step mean minus the median step mean, at the same step, of the
devices sharing the cohort attribute (e.g. the heater model), so a new model's other levels
read as normal. A device alone in its cohort gets 0.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from iot_mlops.features.sql import DECIMALS, bucket_grid, ident, label_of, window_label
from iot_mlops.profiles.schema import FleetProfile

SCALE = 10**6  # baseline step means are summed as integer millionths: exact, whatever the order
Z_LIMIT = 10.0  # a nearly constant baseline would otherwise turn one small change into a z-score in the hundreds


def history_days(profile: FleetProfile, first: datetime) -> list:
    """Days before `first` whose stored feature rows the baselines of a run starting at `first` read."""
    reach = profile.features.baseline_reach
    if not reach:
        return []
    start = (first - reach).date()
    return [start + timedelta(days=i) for i in range((first.date() - start).days)]


def step_mean_column(profile: FleetProfile, sensor: str) -> str:
    """The stored feature column holding a sensor's step mean."""
    return f"{sensor}_mean_{window_label(profile.features.step)}"


def _value(s: str) -> str:
    """SQL over the bucket table: the sensor's step mean, rounded as stored."""
    mean = f"({ident(s + '__sum')} / NULLIF({ident(s + '__n')}, 0))"
    return f"round({mean} * 1e{DECIMALS}) / 1e{DECIMALS}"


def _col(s: str, part: str) -> str:
    return ident(f"__{part}_{s}")


def _scaled(expr: str) -> str:
    return f"CAST(round({expr} * {SCALE}) AS HUGEINT)"


def baseline_sql(profile: FleetProfile, history: str | None, first: int, stop: int, has_telemetry: str) -> str | None:
    """CTE `base`: per device and bucket k in [first, stop), count, sum and sum of squares of its baseline step means.

    Its inputs are the stored feature rows before bucket `first` (`history`) and the bucket table `b` from it on.
    """
    spec = profile.features
    relative = spec.relative
    if relative is None or relative.baseline is None:
        return None
    step_us, anchor = bucket_grid(spec.step)
    values = ", ".join(f"{_value(s)} AS {_col(s, 'v')}" for s in profile.sensor_names)
    parts = [f"SELECT device_id, k, {values} FROM b WHERE k >= {first} AND k < {stop} AND {has_telemetry}"]
    if history:
        stored = ", ".join(f"{ident(step_mean_column(profile, s))} AS {_col(s, 'v')}" for s in profile.sensor_names)
        parts.insert(0, f"SELECT device_id, (epoch_us(ts) - {anchor}) // {step_us} AS k, {stored} FROM {history} "
                        f"WHERE (epoch_us(ts) - {anchor}) // {step_us} < {first}")
    gap = relative.baseline_gap // spec.step if relative.baseline_gap else 0
    frame = f"OVER (w RANGE BETWEEN {gap + relative.baseline // spec.step} PRECEDING AND {gap + 1} PRECEDING)"
    sums = []
    for s in profile.sensor_names:
        x = _scaled(_col(s, "v"))
        sums += [f"count({x}) {frame} AS {_col(s, 'bn')}", f"sum({x}) {frame} AS {_col(s, 'bs')}",
                 f"sum({x} * {x}) {frame} AS {_col(s, 'bq')}"]
    return (f"SELECT device_id, k, {', '.join(sums)} FROM ({' UNION ALL '.join(parts)}) "
            f"WINDOW w AS (PARTITION BY device_id ORDER BY k) QUALIFY k >= {first}")


def relative_columns(profile: FleetProfile) -> tuple[list[str], list[str]]:
    """(columns of `rolled` from the bucket row and `base`, helper columns to drop at the end).

    The helpers are each sensor's rounded step mean `__v_<sensor>`, which the cohort medians need.
    """
    spec = profile.features
    relative = spec.relative
    if relative is None:
        return [], []
    out, helpers = [], []
    for s in profile.sensor_names:
        if relative.baseline is not None:
            n, total, squares = (_col(s, p) for p in ("bn", "bs", "bq"))
            x = _scaled(_value(s))
            spread = f"({n} * {squares} - {total} * {total})"  # n (n - 1) times the sample variance, exact
            # z = (x - sum / n) / sqrt(spread / (n (n - 1))), rearranged so that only the last steps are inexact.
            z = f"CAST({n} * {x} - {total} AS DOUBLE) * sqrt(({n} - 1) / ({n} * CAST({spread} AS DOUBLE)))"
            few = max(2, relative.baseline // spec.step // 2)
            expr = (f"CASE WHEN {x} IS NULL THEN NULL WHEN coalesce({n}, 0) < {few} OR {spread} = 0 THEN 0 "
                    f"WHEN {z} > {Z_LIMIT} THEN {Z_LIMIT} WHEN {z} < -{Z_LIMIT} THEN -{Z_LIMIT} ELSE {z} END")
            name = ident(f"{s}_z_{window_label(relative.baseline)}")
            out.append(f"round(({expr}) * 1e{DECIMALS}) / 1e{DECIMALS} AS {name}")
        if relative.cohort is not None:
            out.append(f"{_value(s)} AS {_col(s, 'v')}")
            helpers.append(f"__v_{s}")
    return out, helpers


def cohort_sql(profile: FleetProfile, devices: str, first: int, stop: int,
               has_telemetry: str) -> tuple[str | None, list[str], list[str]]:
    """(CTE `cohort`: median step means per cohort and time, from `b`; its join onto `rolled r` after `d`; the differences)."""
    relative = profile.features.relative
    if relative is None or relative.cohort is None:
        return None, [], []
    attr = ident(relative.cohort)
    medians = ", ".join(f"median({_value(s)}) AS {_col(s, 'm')}" for s in profile.sensor_names)
    cte = (f"SELECT d.{attr} AS __cohort, {label_of('k', profile.features.step)} AS t, {medians} FROM b "
           f"LEFT JOIN {devices} d ON d.device_id = b.device_id WHERE k >= {first} AND k < {stop} AND {has_telemetry} GROUP BY ALL")
    join = f"LEFT JOIN cohort c ON c.t = r.t AND c.__cohort IS NOT DISTINCT FROM d.{attr}"
    columns = [f"round((r.{_col(s, 'v')} - c.{_col(s, 'm')}) * 1e{DECIMALS}) / 1e{DECIMALS} AS {ident(f'{s}_vs_{relative.cohort}')}"
               for s in profile.sensor_names]
    return cte, [join], columns
