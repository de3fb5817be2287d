"""Seasonal signals compared with the same hour (and month) of the reference.

A sensor named in `monitoring.drift.seasonal` moves with the hour of the day (or week) and the season. Each of its
features is compared after removing the reference's mean for the row's slot: the mean of the same month and slot
where the reference holds that month, else of the same slot over the whole reference, else the overall mean.
Ordinary daily movement then is not drift, while a level beyond what the reference saw still is.
"""

from __future__ import annotations

import math

import duckdb

from iot_mlops.lake import ident
from iot_mlops.monitoring.sensor_features import feature_sensors
from iot_mlops.profiles.schema import FleetProfile

SLOT_SQL = {"hour_of_day": "hour(ts)", "hour_of_week": "(isodow(ts) - 1) * 24 + hour(ts)"}
SLOTS = {"hour_of_day": 24, "hour_of_week": 168}


def seasonal_features(profile: FleetProfile, kinds: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """Numeric feature of a seasonal sensor alone -> (sensor, by, season). Interactions with other sensors are not
    seasonal: they move with those sensors too, and are compared as any feature."""
    signals = {s.sensor: s for s in profile.monitoring.drift.seasonal}
    interactions = {i.name for i in profile.features.interactions}
    found = {}
    for feature, sensors in feature_sensors(profile, [f for f, k in kinds.items() if k == "numeric"]).items():
        (sensor,) = sensors if len(sensors) == 1 else (None,)
        if sensor in signals and feature not in interactions:
            found[feature] = (sensor, signals[sensor].by, signals[sensor].season)
    return found


def _value(name: str) -> str:
    col = f"CAST({ident(name)} AS DOUBLE)"
    return f"CASE WHEN isfinite({col}) THEN {col} END"


def _clean(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def seasonal_means(con: duckdb.DuckDBPyConnection, relation: str, features: dict[str, tuple[str, str, str]]) -> dict[str, dict]:
    """Per seasonal feature of the reference `relation`: its overall mean, its mean per slot and per (month, slot)."""
    means = {}
    for by in sorted({by for _, by, _ in features.values()}):
        names = [f for f, (_, b, _) in features.items() if b == by]
        averages = ", ".join(f"avg({_value(f)})" for f in names)
        rows = con.execute(f"SELECT month(ts) AS m, {SLOT_SQL[by]} AS s, {averages} FROM {relation} "
                           "GROUP BY GROUPING SETS ((m, s), (s), ())").fetchall()
        n = SLOTS[by]
        for i, feature in enumerate(names):
            sensor, _, season = features[feature]
            entry = {"sensor": sensor, "by": by, "season": season, "overall": None, "slots": [None] * n, "months": {}}
            for month, slot, *values in rows:
                value = _clean(values[i])
                if month is None and slot is None:
                    entry["overall"] = value
                elif month is None:
                    entry["slots"][slot] = value
                elif season == "month":
                    entry["months"].setdefault(str(month), [None] * n)[slot] = value
            means[feature] = entry
    return means


def _list(values: list[float | None]) -> str:
    return "CAST([" + ", ".join("NULL" if v is None else f"CAST('{v!r}' AS DOUBLE)" for v in values) + "] AS DOUBLE[])"


def expected_sql(entry: dict) -> str:
    """The reference's mean for a row's slot (same month first, where the reference holds it)."""
    slot, n = SLOT_SQL[entry["by"]], SLOTS[entry["by"]]
    options = []
    if entry["months"]:
        by_month = [v for m in range(1, 13) for v in entry["months"].get(str(m), [None] * n)]
        options.append(f"({_list(by_month)})[(month(ts) - 1) * {n} + {slot} + 1]")
    options.append(f"({_list(entry['slots'])})[{slot} + 1]")
    options.append("NULL" if entry["overall"] is None else f"CAST('{entry['overall']!r}' AS DOUBLE)")
    return f"coalesce({', '.join(options)})"


def deseasonalized(relation: str, seasonal: dict[str, dict]) -> str:
    """`relation` with each seasonal feature replaced by its difference to the reference's mean for the row's slot."""
    if not seasonal:
        return relation
    replaced = ", ".join(f"{_value(f)} - {expected_sql(e)} AS {ident(f)}" for f, e in seasonal.items())
    return f"(SELECT * REPLACE ({replaced}) FROM {relation})"


def seasonal_signals(seasonal: dict[str, dict]) -> dict[str, list[str]]:
    """Seasonal sensor -> its features, as the reference compared them."""
    found: dict[str, list[str]] = {}
    for feature, entry in sorted(seasonal.items()):
        found.setdefault(entry["sensor"], []).append(feature)
    return found
