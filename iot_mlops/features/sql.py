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


def bucket_of(ts: str, step: timedelta) -> str:
    """SQL: number k of the step bucket holding time `ts`: label(k - 1) <= ts < label(k)."""
    step_us, anchor = bucket_grid(step)
    # epoch_us(ts) - anchor > 0, so integer division is a floor.
    return f"(epoch_us({ts}) - {anchor}) // {step_us} + 1"


def first_label_at_or_after(ts: datetime, step: timedelta) -> int:
    step_us, anchor = bucket_grid(step)
    return -((anchor - _micros(ts - datetime(1970, 1, 1))) // step_us)


def has_std(profile: FleetProfile, window: timedelta) -> bool:
    """Whether a window gets std features: not when it holds at most one sample, where std is always NULL."""
    return "std" in profile.features.aggregations and window > profile.sampling_interval


def bucket_stats(profile: FleetProfile) -> list[str]:
    """Per-bucket statistics the features need: count always, the others only when used."""
    spec = profile.features
    std = any(has_std(profile, w) for w in spec.windows)
    stats = ["n"]
    if "mean" in spec.aggregations or std or spec.differences or spec.interactions:
        stats.append("sum")
    if std:
        stats.append("sq")
    # std needs min and max too: equal extremes make it exactly 0.
    return stats + [agg for agg in ("min", "max") if agg in spec.aggregations or std]


def bucket_sql(profile: FleetProfile, telemetry: str) -> str:
    """Per device and step bucket k: count, sum, sum of squares, min and max of each sensor (those needed)."""
    exprs = {"n": "count({c})", "sum": "sum({c})", "sq": "sum({c} * {c})", "min": "min({c})", "max": "max({c})"}
    stats = bucket_stats(profile)
    aggs = [f"{exprs[stat].format(c=ident(s))} AS {ident(f'{s}__{stat}')}" for s in profile.sensor_names for stat in stats]
    return f"SELECT device_id, {bucket_of('ts', profile.features.step)} AS k, {', '.join(aggs)} FROM {telemetry} GROUP BY ALL"


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
            n, total, sq, low, high = (_stat(s, stat, src) for stat in ("n", "sum", "sq", "min", "max"))
            name = lambda agg, s=s, label=label: ident(f"{s}_{agg}_{label}")
            if "mean" in spec.aggregations:
                out.append(f"{_round(f'{total} / NULLIF({n}, 0)')} AS {name('mean')}")
            if has_std(profile, window):
                var = f"({sq} - {total} * {total} / NULLIF({n}, 0)) / NULLIF({n} - 1, 0)"
                # The sum-of-squares variance of a constant leaves rounding noise: equal extremes give exactly 0.
                # Not greatest(var, 0): DuckDB's greatest skips NULL, turning a one-sample std into 0.
                std = f"CASE WHEN {n} < 2 THEN NULL WHEN {low} = {high} THEN 0 WHEN {var} < 0 THEN 0 ELSE sqrt({var}) END"
                out.append(f"{_round(std)} AS {name('std')}")
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


def _kinds(profile: FleetProfile) -> set[str]:
    return {table.kind for table in profile.source.events}


def error_codes(profile: FleetProfile) -> list[str]:
    """Error codes with features: none without an error table, whose counts and times would be 0 and NULL."""
    return list(profile.error_codes) if "error" in _kinds(profile) else []


def _tracked(profile: FleetProfile) -> list[tuple[str, str, str]]:
    """(kind, value, feature) of each event whose latest time is tracked, maintenance first (if it has a table)."""
    components = profile.components if "maintenance" in _kinds(profile) else []
    since = [("maintenance", c, f"hours_since_maint_{c}") for c in components]
    return since + [("error", code, f"hours_since_error_{code.lower()}") for code in error_codes(profile)]


def event_state_sql(profile: FleetProfile, events: str) -> str | None:
    """Table `es`: per device and step bucket k holding tracked events, the state after them; None if none are tracked.

    The state is the latest time so far of each tracked event (l0, l1, ...) and the running
    count of each error code (c0, c1, ...); `__r` numbers the rows. An event at ts lies in
    bucket k exactly when label(k - 1) <= ts < label(k), so the newest state strictly before a
    feature time label(k) is the state of the last bucket at or before k.
    """
    tracked = _tracked(profile)
    if not tracked:
        return None

    def is_event(kind: str, value: str) -> str:
        return f"kind = {sql_str(kind)} AND value = {sql_str(value)}"

    codes = error_codes(profile)
    marks = [f"max(ts) FILTER (WHERE {is_event(kind, value)}) AS l{i}" for i, (kind, value, _) in enumerate(tracked)]
    marks += [f"count(*) FILTER (WHERE {is_event('error', code)}) AS n{j}" for j, code in enumerate(codes)]
    state = [f"max(l{i}) OVER v AS l{i}" for i in range(len(tracked))]
    state += [f"CAST(sum(n{j}) OVER v AS BIGINT) AS c{j}" for j in range(len(codes))]
    any_event = " OR ".join(f"({is_event(kind, value)})" for kind, value, _ in tracked)
    buckets = f"SELECT device_id, {bucket_of('ts', profile.features.step)} AS k, {', '.join(marks)} FROM {events} WHERE {any_event} GROUP BY ALL"
    return (f"SELECT device_id, k, row_number() OVER () AS __r, {', '.join(state)} FROM ({buckets}) "
            "WINDOW v AS (PARTITION BY device_id ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)")


def event_sql(profile: FleetProfile) -> tuple[str, list[str], list[str], list[str]]:
    """(bucket marks, window expressions over `w`, joins, columns) of the event features, from table `es`.

    The marks put, per device and bucket, `__s`: the row of `es` that starts there, and
    `__p`: the one that starts error_window earlier. In the window pass `__rs` (`__rp`) is
    the last `__s` (`__p`) so far, the state in effect at a feature time t (at t -
    error_window); the error counts are their difference.
    """
    spec = profile.features
    codes = error_codes(profile)
    if not codes:
        marks = "SELECT device_id, k, __r AS __s FROM es"
    else:
        back = spec.error_window // spec.step
        marks = ("SELECT device_id, k, max(__r) FILTER (WHERE NOT late) AS __s, max(__r) FILTER (WHERE late) AS __p "
                 f"FROM (SELECT device_id, k, __r, false AS late FROM es UNION ALL SELECT device_id, k + {back}, __r, true FROM es) GROUP BY ALL")
    frame = "OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    windows = [f"last_value(__s IGNORE NULLS) {frame} AS __rs", *([f"last_value(__p IGNORE NULLS) {frame} AS __rp"] if codes else [])]
    joins = ["LEFT JOIN es s ON s.__r = r.__rs", *(["LEFT JOIN es p ON p.__r = r.__rp"] if codes else [])]
    label = window_label(spec.error_window)
    columns = [f"coalesce(s.c{j}, 0) - coalesce(p.c{j}, 0) AS {ident(f'errors_{code.lower()}_{label}')}" for j, code in enumerate(codes)]
    cap = spec.since_cap
    since = (lambda h: h) if cap is None else (lambda h: f"least(coalesce({h}, {cap / timedelta(hours=1)!r}), {cap / timedelta(hours=1)!r})")
    columns += [f"{since(_round(hours(f's.l{i}', 'r.t')))} AS {ident(name)}" for i, (_, _, name) in enumerate(_tracked(profile))]
    return marks, windows, joins, columns

