"""Feature SQL from a profile: step buckets, rolling windows, error counts, time since errors and maintenance.

A feature row at time t describes a device using only data from before t: buckets are
labelled by their right edge, so the bucket [t - step, t) is the newest one it sees.

Buckets are numbered by an integer k (the bucket [t - step, t) has label t = anchor + k * step),
aligned like DuckDB's `time_bucket` (origin 2000-01-03), so windows are integer ranges of k.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from iot_mlops.lake import ident, sql_str
from iot_mlops.profiles.schema import FleetProfile

DECIMALS = 9  # rounding keeps files byte-stable whatever the summation order
_ORIGIN_US = 946_857_600_000_000  # 2000-01-03 00:00, time_bucket's default origin for sub-month widths
_REACH_US = 10**16  # about 317 years: bucket numbers stay positive for any timestamp after 1653


def interval(delta: timedelta) -> str:
    return f"INTERVAL {int(delta.total_seconds())} SECOND"


def window_label(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0 and seconds > 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}min"


def _micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def bucket_grid(step: timedelta) -> tuple[int, int]:
    """(step, anchor) in microseconds: label k is `anchor + k * step`, anchor aligned with time_bucket."""
    step_us = _micros(step)
    return step_us, _ORIGIN_US - step_us * ((_ORIGIN_US + _REACH_US) // step_us)


def label_of(k: str, step: timedelta) -> str:
    """SQL: the label timestamp of bucket number `k`."""
    step_us, anchor = bucket_grid(step)
    return f"make_timestamp({k} * {step_us} + {anchor})"


def first_label_at_or_after(ts: datetime, step: timedelta) -> int:
    step_us, anchor = bucket_grid(step)
    return -((anchor - _micros(ts - datetime(1970, 1, 1))) // step_us)


def bucket_sql(profile: FleetProfile, telemetry: str) -> str:
    """Per device and step bucket k: count, sum, sum of squares, min and max of each sensor."""
    step_us, anchor = bucket_grid(profile.features.step)
    aggs = []
    for s in profile.sensor_names:
        col = ident(s)
        aggs += [f"count({col}) AS {ident(s + '__n')}", f"sum({col}) AS {ident(s + '__sum')}",
                 f"sum({col} * {col}) AS {ident(s + '__sq')}", f"min({col}) AS {ident(s + '__min')}",
                 f"max({col}) AS {ident(s + '__max')}"]
    # epoch_us(ts) - anchor > 0, so integer division is a floor: ts lies in the bucket labelled k.
    return f"SELECT device_id, (epoch_us(ts) - {anchor}) // {step_us} + 1 AS k, {', '.join(aggs)} FROM {telemetry} GROUP BY ALL"


def _stat(s: str, stat: str, label: str | None) -> str:
    """Column of bucket statistic `stat` of sensor s, over the window `label` (None: the step bucket)."""
    return ident(f"{s}__{stat}" if label is None else f"{s}__{stat}__{label}")


def window_sql(profile: FleetProfile) -> list[str]:
    """Window aggregates over the bucket table `b` (window `w`), each computed once, for rolling_sql.

    A one-bucket window is the bucket itself; wider ones aggregate buckets k - buckets + 1 .. k.
    """
    spec = profile.features
    out = []
    stats = ["n", "sum", "sq"] + [agg for agg in ("min", "max") if agg in spec.aggregations]
    for window in spec.windows:
        buckets = window // spec.step
        if buckets > 1:
            frame = f"OVER (w RANGE BETWEEN {buckets - 1} PRECEDING AND CURRENT ROW)"
            label = window_label(window)
            for s in profile.sensor_names:
                for stat in stats:
                    agg = stat if stat in ("min", "max") else "sum"
                    out.append(f"{agg}({_stat(s, stat, None)}) {frame} AS {_stat(s, stat, label)}")
    if spec.differences:
        out.append("lag(k) OVER w AS __prev_k")
        out += [f"lag({_mean(s)}) OVER w AS {_stat(s, 'prev', None)}" for s in profile.sensor_names]
    return out


def _mean(s: str) -> str:
    return f"({ident(s + '__sum')} / NULLIF({ident(s + '__n')}, 0))"


def rolling_sql(profile: FleetProfile) -> list[str]:
    """Rolling aggregates of each sensor over each window, from the columns of window_sql."""
    spec = profile.features
    out = []
    for window in spec.windows:
        label = window_label(window)
        src = None if window // spec.step == 1 else label
        for s in profile.sensor_names:
            n, total, sq = (_stat(s, stat, src) for stat in ("n", "sum", "sq"))
            name = lambda agg: ident(f"{s}_{agg}_{label}")  # noqa: E731
            if "mean" in spec.aggregations:
                out.append(f"{total} / NULLIF({n}, 0) AS {name('mean')}")
            if "std" in spec.aggregations:
                var = f"({sq} - {total} * {total} / NULLIF({n}, 0)) / NULLIF({n} - 1, 0)"
                # Not greatest(var, 0): DuckDB's greatest skips NULL, turning a one-sample std into 0.
                out.append(f"sqrt(CASE WHEN {var} < 0 THEN 0 ELSE {var} END) AS {name('std')}")
            for agg in ("min", "max"):
                if agg in spec.aggregations:
                    out.append(f"{_stat(s, agg, src)} AS {name(agg)}")
    return out


def step_sql(profile: FleetProfile) -> list[str]:
    """First differences and percent change of step means, and cross-sensor interactions."""
    spec = profile.features
    out = []
    if spec.differences:
        for s in profile.sensor_names:
            prev = _stat(s, "prev", None)
            out.append(f"CASE WHEN __prev_k = k - 1 THEN {_mean(s)} - {prev} END AS {ident(s + '_diff')}")
            out.append(f"CASE WHEN __prev_k = k - 1 THEN ({_mean(s)} - {prev}) / NULLIF(abs({prev}), 0) END AS {ident(s + '_pct_change')}")
    for inter in spec.interactions:
        left, right = _mean(inter.left), _mean(inter.right)
        expr = {"difference": f"{left} - {right}", "ratio": f"{left} / NULLIF({right}, 0)", "product": f"{left} * {right}"}[inter.op]
        out.append(f"{expr} AS {ident(inter.name)}")
    return out


def hours(earlier: str, later: str) -> str:
    """SQL: elapsed hours between two timestamps (date_diff would count second boundaries instead)."""
    return f"(epoch_us({later}) - epoch_us({earlier})) / 3.6e9"


def event_sql(profile: FleetProfile) -> list[str]:
    """CTEs `errs` and `since` on the narrow key table `keys` (device_id, k, t): error counts, hours since events.

    Hours since: one table holding, per device and event time, the latest time so far of each
    tracked (kind, value); one ASOF join gives every key the newest state strictly before t.
    """
    spec = profile.features
    errors = [(code, ident(f"errors_{code.lower()}_{window_label(spec.error_window)}")) for code in profile.error_codes]
    if errors:
        counts = ", ".join(f"count(e.ts) FILTER (WHERE e.value = {sql_str(code)}) AS {name}" for code, name in errors)
        codes = ", ".join(sql_str(code) for code, _ in errors)
        errs = (f"SELECT f.device_id, f.k, {counts} FROM keys f LEFT JOIN (SELECT device_id, ts, value FROM ev "
                f"WHERE kind = 'error' AND value IN ({codes})) e ON e.device_id = f.device_id "
                f"AND e.ts >= f.t - {interval(spec.error_window)} AND e.ts < f.t GROUP BY ALL")
    else:
        errs = "SELECT device_id, k FROM keys"
    since = [("maintenance", c, f"hours_since_maint_{c}") for c in profile.components]
    since += [("error", code, f"hours_since_error_{code.lower()}") for code in profile.error_codes]
    if not since:
        return [f"errs AS ({errs})", "since AS (SELECT device_id, k FROM keys)"]
    tracked = " OR ".join(f"(kind = {sql_str(kind)} AND value = {sql_str(value)})" for kind, value, _ in since)
    latest = ", ".join(
        f"max(ts) FILTER (WHERE kind = {sql_str(kind)} AND value = {sql_str(value)}) OVER v AS l{i}" for i, (kind, value, _) in enumerate(since)
    )
    state = (f"SELECT DISTINCT device_id, ts, {latest} FROM ev WHERE {tracked} "
             "WINDOW v AS (PARTITION BY device_id ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)")
    cols = ", ".join(f"{hours(f's.l{i}', 'f.t')} AS {ident(name)}" for i, (_, _, name) in enumerate(since))
    return [
        f"errs AS ({errs})",
        f"state AS ({state})",
        f"since AS (SELECT f.device_id, f.k, {cols} FROM keys f ASOF LEFT JOIN state s ON s.device_id = f.device_id AND s.ts < f.t)",
    ]


def features_sql(profile: FleetProfile, telemetry: str, events: str | None, devices: str, start: str, end: str) -> str:
    """The full feature query for feature times t in [start, end)."""
    step = profile.features.step
    first, stop = (first_label_at_or_after(datetime.fromisoformat(x), step) for x in (start, end))
    rolling = ", ".join(rolling_sql(profile) + step_sql(profile))
    windows = "".join(", " + w for w in window_sql(profile))
    events_src = events or "(SELECT NULL::VARCHAR AS device_id, NULL::TIMESTAMP AS ts, NULL::VARCHAR AS kind, NULL::VARCHAR AS value WHERE false)"
    attr_cols = "".join(f", d.{ident(a.name)}" for a in profile.source.devices.attributes)
    ctes = ",\n".join([
        f"b AS ({bucket_sql(profile, telemetry)})",
        f"wb AS (SELECT *{windows} FROM b WINDOW w AS (PARTITION BY device_id ORDER BY k))",
        f"rolled AS (SELECT device_id, k, {rolling} FROM wb WHERE k >= {first} AND k < {stop})",
        f"ev AS (SELECT device_id, ts, kind, value FROM {events_src})",
        f"keys AS (SELECT device_id, k, {label_of('k', step)} AS t FROM rolled)",
        *event_sql(profile),
    ])  # fmt: skip
    return f"""
WITH {ctes}
SELECT r.device_id, {label_of('r.k', step)} AS ts, r.* EXCLUDE (device_id, k), errs.* EXCLUDE (device_id, k),
       since.* EXCLUDE (device_id, k){attr_cols}
FROM rolled r JOIN errs USING (device_id, k) JOIN since USING (device_id, k)
LEFT JOIN {devices} d ON d.device_id = r.device_id
"""




def rounded(columns: list[tuple[str, str]]) -> str:
    """SELECT list that rounds floating columns so the stored bytes are reproducible."""
    out = []
    for name, dtype in columns:
        col = ident(name)
        out.append(f"round({col}, {DECIMALS}) AS {col}" if dtype in ("DOUBLE", "FLOAT") else col)
    return ", ".join(out)
