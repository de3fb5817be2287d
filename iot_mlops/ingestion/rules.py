"""Validation rules as SQL: each row gets the first reason it is invalid, or NULL when valid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from iot_mlops.lake import connect, ident, sql_str
from iot_mlops.profiles.schema_types import DEVICE_ID

NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")


def is_numeric(dtype: str) -> bool:
    return dtype.upper().startswith(NUMERIC_TYPES)


def is_timestamp(dtype: str) -> bool:
    return dtype.upper().startswith(("TIMESTAMP", "DATE"))


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column to parse and range-check (sensor or numeric attribute)."""

    name: str  # name in the lake
    source: str  # name in the source file
    min: float | None
    max: float | None


def text_expr(column: str) -> str:
    return f"NULLIF(trim(CAST({ident(column)} AS VARCHAR)), '')"


def device_expr(column: str) -> str:
    """A device id as given: ids with surrounding whitespace break DEVICE_ID and are refused, as by the API."""
    return f"CAST({ident(column)} AS VARCHAR)"


def device_rules(column: str) -> list[tuple[str, str]]:
    """(condition, reason) pairs for a device id column."""
    return [
        (f"{text_expr(column)} IS NULL", "missing_value:device_id"),
        (f"NOT regexp_full_match({device_expr(column)}, {sql_str(DEVICE_ID)})", "invalid_device_id"),
    ]


def timestamp_rules(ts: str, limit: datetime) -> list[tuple[str, str]]:
    """(condition, reason) pairs for a parsed timestamp (timestamp_layers' __ts and __ts_problem)."""
    rules = [(f"__ts_problem = {sql_str(p)}", p) for p in TIMESTAMP_PROBLEMS]
    return [*rules, (f"{ts} IS NULL", "unparsable_timestamp"), (f"{ts} > TIMESTAMP {sql_str(limit)}", "timestamp_in_future")]


# A local date-time and an optional zone: Z, an offset (+HH, +HHMM, +HH:MM) or a zone name (Europe/Berlin).
TIMESTAMP_PATTERN = (
    r"^(\d{4}-\d{1,2}-\d{1,2})(?:[T ](\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?|[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*)?$"
)
OFFSET_PATTERN = r"^[+-]\d{2}(:?\d{2})?$"
_IN_RANGE = "__ts_r BETWEEN TIMESTAMP '0001-01-01 00:00:00' AND TIMESTAMP '9999-12-31 23:59:59.999999'"
TIMESTAMP_PROBLEMS = ("unparsable_timestamp", "unknown_time_zone", "nonexistent_local_time", "ambiguous_local_time")
AMBIGUOUS = ("quarantine", "earliest", "latest")


# One SELECT level of derived columns: (expression, column name) pairs.
Layer = list[tuple[str, str]]


@cache
def _zone_names() -> str:
    """The zone names DuckDB knows, as a SQL list (an unknown name makes timezone() raise)."""
    with connect() as con:
        names = [name for (name,) in con.execute("SELECT name FROM pg_timezone_names() ORDER BY name").fetchall()]
    return "[" + ", ".join(sql_str(n) for n in names) + "]"


def _typed(column: str, dtype: str) -> str:
    """A typed timestamp or date column as naive UTC."""
    zoned = "TIME ZONE" in dtype.upper() or dtype.upper() == "TIMESTAMPTZ"
    # Through epoch microseconds: independent of the session's TimeZone, and fast.
    return f"make_timestamp(epoch_us({ident(column)}))" if zoned else f"CAST({ident(column)} AS TIMESTAMP)"


def timestamp_layers(column: str, dtype: str, ambiguous: str = "quarantine") -> list[Layer]:
    """Columns __ts (naive UTC or NULL) and __ts_problem (a TIMESTAMP_PROBLEMS reason or NULL), row by row.

    Naive values are UTC, offsets and zone names are honoured, a date alone is midnight UTC.
    Each layer is one SELECT level over the previous (innermost first), so each step runs once per row.
    """
    if ambiguous not in AMBIGUOUS:
        raise ValueError(f"ambiguous must be one of {AMBIGUOUS}, got {ambiguous!r}")
    if is_timestamp(dtype):
        finite = "__ts_t IS NULL OR isfinite(__ts_t)"
        return [
            [(_typed(column, dtype), "__ts_t")],
            [(f"CASE WHEN {finite} THEN __ts_t END", "__ts"), (f"CASE WHEN NOT ({finite}) THEN 'unparsable_timestamp' END", "__ts_problem")],
        ]
    text = text_expr(column)
    hours, minutes = "TRY_CAST(substr(__ts_p.z, 2, 2) AS INTEGER)", "coalesce(TRY_CAST(right(replace(__ts_p.z, ':', ''), 2) AS INTEGER), 0)"
    minutes = f"CASE WHEN length(replace(__ts_p.z, ':', '')) = 5 THEN {minutes} ELSE 0 END"
    sign = "CASE WHEN starts_with(__ts_p.z, '-') THEN -1 ELSE 1 END"

    def offset(utc: str) -> str:  # the named zone's UTC offset at a UTC time
        return f"(timezone(__ts_p.z, timezone('UTC', {utc})) - {utc})"

    kind = f"""CASE WHEN {text} IS NULL THEN 'missing' WHEN __ts_l IS NULL THEN 'unparsable_timestamp'
        WHEN __ts_p.z IN ('', 'Z') THEN 'naive'
        WHEN regexp_full_match(__ts_p.z, '{OFFSET_PATTERN}') THEN CASE WHEN {hours} <= 23 AND {minutes} <= 59 THEN 'offset' ELSE 'unparsable_timestamp' END
        WHEN list_contains({_zone_names()}, __ts_p.z) THEN 'named' ELSE 'unknown_time_zone' END"""
    # The offsets a day before and after bracket any single clock change; each gives a candidate UTC
    # time, valid when the zone has that offset then: none valid, the local time was skipped; two, repeated.
    candidates = f"""CASE WHEN __ts_k = 'named' THEN {{'o1': {offset("(__ts_l - INTERVAL 1 DAY)")}, 'o2': {offset("(__ts_l + INTERVAL 1 DAY)")}}} END"""
    fits = "CASE WHEN __ts_k = 'named' THEN {'v1': " + offset("__ts_u1") + " = __ts_c.o1, 'v2': " + offset("__ts_u2") + " = __ts_c.o2} END"
    pick = {"earliest": "least(__ts_u1, __ts_u2)", "latest": "greatest(__ts_u1, __ts_u2)"}.get(ambiguous)
    ts = f"""CASE __ts_k WHEN 'naive' THEN __ts_l WHEN 'offset' THEN __ts_l - to_minutes({sign} * ({hours} * 60 + {minutes}))
        WHEN 'named' THEN CASE WHEN __ts_v.v1 AND __ts_v.v2 AND __ts_u1 <> __ts_u2 THEN {pick or 'NULL'}
            WHEN __ts_v.v1 THEN __ts_u1 WHEN __ts_v.v2 THEN __ts_u2 END END"""
    problem = f"""CASE WHEN __ts_k IN ('unparsable_timestamp', 'unknown_time_zone') THEN __ts_k
        WHEN __ts_k = 'named' AND __ts_v.v1 AND __ts_v.v2 AND __ts_u1 <> __ts_u2 THEN {'NULL' if pick else "'ambiguous_local_time'"}
        WHEN __ts_k = 'named' AND NOT __ts_v.v1 AND NOT __ts_v.v2 THEN 'nonexistent_local_time' END"""
    local = "TRY_CAST(NULLIF(__ts_p.d, '') || ' ' || coalesce(NULLIF(__ts_p.t, ''), '00:00:00') AS TIMESTAMP)"
    return [
        [(f"regexp_extract({text}, '{TIMESTAMP_PATTERN}', ['d', 't', 'z'])", "__ts_p")],
        [(local, "__ts_l")],
        [(kind, "__ts_k")],
        [(candidates, "__ts_c")],
        [("__ts_l - __ts_c.o1", "__ts_u1"), ("__ts_l - __ts_c.o2", "__ts_u2")],
        [(fits, "__ts_v")],
        [(ts, "__ts_r"), (problem, "__ts_rp")],
        # An offset can carry a valid local time past year 9999 or before year 1 in UTC: no timestamp either.
        [(f"CASE WHEN {_IN_RANGE} THEN __ts_r END", "__ts"),
         (f"CASE WHEN __ts_r IS NOT NULL AND NOT ({_IN_RANGE}) THEN 'unparsable_timestamp' ELSE __ts_rp END", "__ts_problem")],
    ]


def layered(source: str, layers: list[Layer]) -> str:
    """`source` with each layer's columns added in turn."""
    for layer in layers:
        source = f"(SELECT *, {', '.join(f'{expr} AS {name}' for expr, name in layer)} FROM {source})"
    return source


def number_expr(column: str, dtype: str) -> str:
    if is_numeric(dtype):
        return f"CAST({ident(column)} AS DOUBLE)"
    return f"TRY_CAST({text_expr(column)} AS DOUBLE)"


def missing_cond(column: str, dtype: str) -> str:
    if is_numeric(dtype):
        return f"({ident(column)} IS NULL OR isnan(CAST({ident(column)} AS DOUBLE)))"
    return f"({text_expr(column)} IS NULL OR lower({text_expr(column)}) IN ('nan', 'null', 'none', 'na'))"


def numeric_reasons(col: NumericColumn, dtype: str) -> list[tuple[str, str]]:
    """(condition, reason) pairs for one numeric column, in the order they are checked."""
    value = number_expr(col.source, dtype)
    rules = [(missing_cond(col.source, dtype), f"missing_value:{col.name}")]
    if not is_numeric(dtype):
        rules.append((f"{value} IS NULL", f"non_numeric:{col.name}"))
    bounds = []
    if col.min is not None:
        bounds.append(f"{value} < {col.min!r}")
    if col.max is not None:
        bounds.append(f"{value} > {col.max!r}")
    if bounds:
        rules.append((" OR ".join(bounds), f"out_of_range:{col.name}"))
    return rules


def reason_case(rules: list[tuple[str, str]]) -> str:
    """A CASE expression giving the first failing rule's reason, or NULL."""
    whens = "\n".join(f"  WHEN {cond} THEN {sql_str(reason)}" for cond, reason in rules)
    return f"CASE\n{whens}\n  ELSE NULL END"


def reason_category(reason_column: str = "reason") -> str:
    """The part of a reason before ':' (e.g. out_of_range), for counts by class."""
    return f"split_part({reason_column}, ':', 1)"
