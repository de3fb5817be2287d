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


def bucket_stats(profile: FleetProfile) -> list[str]:
    """Per-bucket statistics the features need: count always, the others only when used."""
    spec = profile.features
    stats = ["n"]
    if "mean" in spec.aggregations or "std" in spec.aggregations or spec.differences or spec.interactions:
        stats.append("sum")
    if "std" in spec.aggregations:
        stats.append("sq")
    return stats + [agg for agg in ("min", "max") if agg in spec.aggregations]


def bucket_sql(profile: FleetProfile, telemetry: str) -> str:
    """Per device and step bucket k: count, sum, sum of squares, min and max of each sensor (those needed)."""
    step_us, anchor = bucket_grid(profile.features.step)
    exprs = {"n": "count({c})", "sum": "sum({c})", "sq": "sum({c} * {c})", "min": "min({c})", "max": "max({c})"}
    stats = bucket_stats(profile)
    aggs = [f"{exprs[stat].format(c=ident(s))} AS {ident(f'{s}__{stat}')}" for s in profile.sensor_names for stat in stats]
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
    stats = bucket_stats(profile)
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


def _round(expr: str) -> str:
    """Stored floating values are rounded, so the bytes do not depend on summation order.

    Spelled out: the same values as round(x, DECIMALS), without a pow() per value.
    """
    return f"round(({expr}) * 1e{DECIMALS}) / 1e{DECIMALS}"


def rolling_sql(profile: FleetProfile) -> list[str]:
    """Rolling aggregates of each sensor over each window, from the columns of window_sql."""
    spec = profile.features
    out = []
    for window in spec.windows:
        label = window_label(window)
        src = None if window // spec.step == 1 else label
        for s in profile.sensor_names:
            n, total, sq = (_stat(s, stat, src) for stat in ("n", "sum", "sq"))
            name = lambda agg, s=s, label=label: ident(f"{s}_{agg}_{label}")
            if "mean" in spec.aggregations:
                out.append(f"{_round(f'{total} / NULLIF({n}, 0)')} AS {name('mean')}")
            if "std" in spec.aggregations:
                var = f"({sq} - {total} * {total} / NULLIF({n}, 0)) / NULLIF({n} - 1, 0)"
                # Not greatest(var, 0): DuckDB's greatest skips NULL, turning a one-sample std into 0.
                out.append(f"{_round(f'sqrt(CASE WHEN {var} < 0 THEN 0 ELSE {var} END)')} AS {name('std')}")
            for agg in ("min", "max"):
                if agg in spec.aggregations:
                    out.append(f"{_round(_stat(s, agg, src))} AS {name(agg)}")
    return out


def step_sql(profile: FleetProfile) -> list[str]:
    """First differences and percent change of step means, and cross-sensor interactions."""
    spec = profile.features
    out = []
    if spec.differences:
        for s in profile.sensor_names:
            prev = _stat(s, "prev", None)
            out.append(f"{_round(f'CASE WHEN __prev_k = k - 1 THEN {_mean(s)} - {prev} END')} AS {ident(s + '_diff')}")
            pct = f"CASE WHEN __prev_k = k - 1 THEN ({_mean(s)} - {prev}) / NULLIF(abs({prev}), 0) END"
            out.append(f"{_round(pct)} AS {ident(s + '_pct_change')}")
    for inter in spec.interactions:
        left, right = _mean(inter.left), _mean(inter.right)
        expr = {"difference": f"{left} - {right}", "ratio": f"{left} / NULLIF({right}, 0)", "product": f"{left} * {right}"}[inter.op]
        out.append(f"{_round(expr)} AS {ident(inter.name)}")
    return out


def hours(earlier: str, later: str) -> str:
    """SQL: elapsed hours between two timestamps (date_diff would count second boundaries instead)."""
    return f"(epoch_us({later}) - epoch_us({earlier})) / 3.6e9"


def event_sql(profile: FleetProfile) -> list[str]:
    """CTE `evf` on the narrow key table `keys` (device_id, t): error counts over the error window, hours since events.

    One table `state` holds, per device and event time, the latest time so far of each tracked
    (kind, value) and the running count of each error code. An ASOF join at t gives every key
    the newest state strictly before t; a second one at t - error_window gives the counts to
    subtract. Keys stay narrow: an ASOF join sorts everything it carries.
    """
    spec = profile.features
    codes = list(profile.error_codes)
    since = [("maintenance", c, f"hours_since_maint_{c}") for c in profile.components]
    since += [("error", code, f"hours_since_error_{code.lower()}") for code in codes]
    if not since:
        return ["evf AS (SELECT device_id, t FROM keys)"]

    def is_event(kind: str, value: str) -> str:
        return f"kind = {sql_str(kind)} AND value = {sql_str(value)}"

    tracked = " OR ".join(f"({is_event(kind, value)})" for kind, value, _ in since)
    state_cols = [f"max(ts) FILTER (WHERE {is_event(kind, value)}) OVER v AS l{i}" for i, (kind, value, _) in enumerate(since)]
    state_cols += [f"count(*) FILTER (WHERE {is_event('error', code)}) OVER v AS c{j}" for j, code in enumerate(codes)]
    state = (f"SELECT DISTINCT device_id, ts, {', '.join(state_cols)} FROM ev WHERE {tracked} "
             "WINDOW v AS (PARTITION BY device_id ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)")
    label = window_label(spec.error_window)
    select = [f"coalesce(s.c{j}, 0) - coalesce(p.c{j}, 0) AS {ident(f'errors_{code.lower()}_{label}')}" for j, code in enumerate(codes)]
    select += [f"{_round(hours(f's.l{i}', 'r.t'))} AS {ident(name)}" for i, (_, _, name) in enumerate(since)]
    joins = ["ASOF LEFT JOIN state s ON s.device_id = r.device_id AND s.ts < r.t"]
    if codes:
        joins.append(f"ASOF LEFT JOIN state p ON p.device_id = r.device_id AND p.ts < r.t - {interval(spec.error_window)}")
    return [f"state AS ({state})", f"evf AS (SELECT r.device_id, r.t, {', '.join(select)} FROM keys r {' '.join(joins)})"]


def features_sql(profile: FleetProfile, telemetry: str, events: str | None, devices: str, start: str, end: str) -> str:
    """The full feature query for feature times t in [start, end)."""
    step = profile.features.step
    first, stop = (first_label_at_or_after(datetime.fromisoformat(x), step) for x in (start, end))
    rolling = ", ".join(rolling_sql(profile) + step_sql(profile))
    windows = "".join(", " + w for w in window_sql(profile))
    events_src = events or "(SELECT NULL::VARCHAR AS device_id, NULL::TIMESTAMP AS ts, NULL::VARCHAR AS kind, NULL::VARCHAR AS value WHERE false)"
    attrs = profile.source.devices.attributes
    attr_cols = [f"round(d.{ident(a.name)}, {DECIMALS}) AS {ident(a.name)}" if a.kind == "numeric" else f"d.{ident(a.name)}" for a in attrs]
    ctes = ",\n".join([
        f"b AS ({bucket_sql(profile, telemetry)})",
        f"wb AS (SELECT *{windows} FROM b WINDOW w AS (PARTITION BY device_id ORDER BY k))",
        f"rolled AS (SELECT device_id, {label_of('k', step)} AS t, {rolling} FROM wb WHERE k >= {first} AND k < {stop})",
        f"ev AS (SELECT device_id, ts, kind, value FROM {events_src})",
        "keys AS (SELECT device_id, t FROM rolled)",
        *event_sql(profile),
    ])  # fmt: skip
    columns = ", ".join(["r.device_id", "r.t AS ts", "r.* EXCLUDE (device_id, t)", "evf.* EXCLUDE (device_id, t)", *attr_cols])
    return (f"WITH {ctes}\nSELECT {columns}\nFROM rolled r JOIN evf USING (device_id, t)\n"
            f"LEFT JOIN {devices} d ON d.device_id = r.device_id\n")
