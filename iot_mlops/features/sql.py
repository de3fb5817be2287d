"""Feature SQL from a profile: step buckets, rolling windows, error counts, time since errors and maintenance.

A feature row at time t describes a device using only data from before t: buckets are
labelled by their right edge, so the bucket [t - step, t) is the newest one it sees.
"""

from __future__ import annotations

from datetime import timedelta

from iot_mlops.lake import ident, sql_str
from iot_mlops.profiles.schema import FleetProfile

DECIMALS = 9  # rounding keeps files byte-stable whatever the summation order


def interval(delta: timedelta) -> str:
    return f"INTERVAL {int(delta.total_seconds())} SECOND"


def window_label(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0 and seconds > 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}min"


def bucket_sql(profile: FleetProfile, telemetry: str) -> str:
    """Per device and step: count, sum, sum of squares, min and max of each sensor."""
    step = interval(profile.features.step)
    aggs = []
    for s in profile.sensor_names:
        col = ident(s)
        aggs += [f"count({col}) AS {ident(s + '__n')}", f"sum({col}) AS {ident(s + '__sum')}",
                 f"sum({col} * {col}) AS {ident(s + '__sq')}", f"min({col}) AS {ident(s + '__min')}",
                 f"max({col}) AS {ident(s + '__max')}"]
    return (
        f"SELECT device_id, time_bucket({step}, ts) + {step} AS t, {', '.join(aggs)} "
        f"FROM {telemetry} GROUP BY ALL"
    )


def rolling_sql(profile: FleetProfile) -> list[str]:
    """Rolling aggregates of each sensor over each window, from the bucket table `b`."""
    spec = profile.features
    out = []
    for window in spec.windows:
        frame = f"OVER (PARTITION BY device_id ORDER BY t RANGE BETWEEN {interval(window - spec.step)} PRECEDING AND CURRENT ROW)"
        label = window_label(window)
        for s in profile.sensor_names:
            n, total, sq = (f"sum({ident(s + suffix)}) {frame}" for suffix in ("__n", "__sum", "__sq"))
            name = lambda agg: ident(f"{s}_{agg}_{label}")  # noqa: E731
            if "mean" in spec.aggregations:
                out.append(f"{total} / NULLIF({n}, 0) AS {name('mean')}")
            if "std" in spec.aggregations:
                var = f"({sq} - {total} * {total} / NULLIF({n}, 0)) / NULLIF({n} - 1, 0)"
                # Not greatest(var, 0): DuckDB's greatest skips NULL, turning a one-sample std into 0.
                out.append(f"sqrt(CASE WHEN {var} < 0 THEN 0 ELSE {var} END) AS {name('std')}")
            if "min" in spec.aggregations:
                out.append(f"min({ident(s + '__min')}) {frame} AS {name('min')}")
            if "max" in spec.aggregations:
                out.append(f"max({ident(s + '__max')}) {frame} AS {name('max')}")
    return out


def step_sql(profile: FleetProfile) -> list[str]:
    """First differences and percent change of step means, and cross-sensor interactions."""
    spec = profile.features
    out = []
    mean = lambda s: f"({ident(s + '__sum')} / NULLIF({ident(s + '__n')}, 0))"  # noqa: E731
    if spec.differences:
        prev_ok = f"lag(t) OVER w = t - {interval(spec.step)}"
        for s in profile.sensor_names:
            prev = f"lag({mean(s)}) OVER w"
            out.append(f"CASE WHEN {prev_ok} THEN {mean(s)} - {prev} END AS {ident(s + '_diff')}")
            out.append(f"CASE WHEN {prev_ok} THEN ({mean(s)} - {prev}) / NULLIF(abs({prev}), 0) END AS {ident(s + '_pct_change')}")
    for inter in spec.interactions:
        left, right = mean(inter.left), mean(inter.right)
        expr = {"difference": f"{left} - {right}", "ratio": f"{left} / NULLIF({right}, 0)", "product": f"{left} * {right}"}[inter.op]
        out.append(f"{expr} AS {ident(inter.name)}")
    return out


def features_sql(profile: FleetProfile, telemetry: str, events: str | None, devices: str, start: str, end: str) -> str:
    """The full feature query for feature times t in [start, end)."""
    spec = profile.features
    rolling = ", ".join(rolling_sql(profile) + step_sql(profile))
    events_src = events or "(SELECT NULL::VARCHAR AS device_id, NULL::TIMESTAMP AS ts, NULL::VARCHAR AS kind, NULL::VARCHAR AS value WHERE false)"
    error_cols = [
        f"count(*) FILTER (WHERE e.value = {sql_str(code)}) AS {ident('errors_' + code.lower() + '_' + window_label(spec.error_window))}"
        for code in profile.error_codes
    ]
    error_counts = (
        f"SELECT f.device_id, f.t, {', '.join(error_cols)} FROM rolled f LEFT JOIN ev e "
        f"ON e.kind = 'error' AND e.device_id = f.device_id AND e.ts >= f.t - {interval(spec.error_window)} AND e.ts < f.t GROUP BY ALL"
        if error_cols else "SELECT device_id, t FROM rolled"
    )
    since = [("maintenance", c, f"hours_since_maint_{c}") for c in profile.components]
    since += [("error", code, f"hours_since_error_{code.lower()}") for code in profile.error_codes]
    maint_joins, maint_cols = [], []
    for i, (kind, value, name) in enumerate(since):
        alias = f"m{i}"
        maint_joins.append(
            f"ASOF LEFT JOIN (SELECT device_id, ts FROM ev WHERE kind = {sql_str(kind)} AND value = {sql_str(value)}) {alias} "
            f"ON {alias}.device_id = r.device_id AND {alias}.ts < r.t"
        )
        maint_cols.append(f"date_diff('second', {alias}.ts, r.t) / 3600.0 AS {ident(name)}")
    attributes = [a.name for a in profile.source.devices.attributes]
    attr_cols = ", ".join(f"d.{ident(a)}" for a in attributes)
    return f"""
WITH b AS ({bucket_sql(profile, telemetry)}),
rolled AS (SELECT device_id, t, {rolling} FROM b WINDOW w AS (PARTITION BY device_id ORDER BY t)),
ev AS (SELECT device_id, ts, kind, value FROM {events_src}),
errs AS ({error_counts}),
joined AS (
  SELECT r.*, errs.* EXCLUDE (device_id, t), {', '.join(maint_cols)}, {attr_cols}
  FROM rolled r JOIN errs USING (device_id, t)
  {' '.join(maint_joins)}
  LEFT JOIN {devices} d ON d.device_id = r.device_id
)
SELECT device_id, t AS ts, * EXCLUDE (device_id, t) FROM joined
WHERE t >= TIMESTAMP {sql_str(start)} AND t < TIMESTAMP {sql_str(end)}
"""


def rounded(columns: list[tuple[str, str]]) -> str:
    """SELECT list that rounds floating columns so the stored bytes are reproducible."""
    out = []
    for name, dtype in columns:
        col = ident(name)
        out.append(f"round({col}, {DECIMALS}) AS {col}" if dtype in ("DOUBLE", "FLOAT") else col)
    return ", ".join(out)
