"""Validation rules as SQL: each row gets the first reason it is invalid, or NULL when valid."""

from __future__ import annotations

from dataclasses import dataclass

from iot_mlops.lake import ident, sql_str

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


def timestamp_expr(column: str, dtype: str) -> str:
    """Parse a timestamp to naive UTC; offsets are honoured, naive values are taken as UTC."""
    if is_timestamp(dtype):
        return f"CAST({ident(column)} AS TIMESTAMP)"
    return f"CAST(TRY_CAST({text_expr(column)} AS TIMESTAMPTZ) AS TIMESTAMP)"


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
