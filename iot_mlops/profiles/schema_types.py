"""Field types shared by profile sections and the API: durations, identifiers and device ids."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|min|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}
IDENTIFIER = r"^[a-z][a-z0-9_]*$"
# The one device id rule: ingestion quarantines other ids and the API refuses them (no surrounding whitespace).
DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"


def parse_duration(value: object) -> object:
    """Accept '90s', '1min', '3h', '30d' as well as timedeltas and seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"invalid duration {value!r}: use e.g. '60s', '1min', '3h', '30d'")
        return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


def format_duration(value: timedelta) -> str:
    """A duration as a profile would write it: '90s', '15min', '1h', '24h', '7d'."""
    seconds = int(value.total_seconds())
    if seconds and seconds % 86400 == 0 and seconds > 86400:
        return f"{seconds // 86400}d"
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{value.total_seconds():g}s"


def positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value}")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(positive)]
Identifier = Annotated[str, Field(pattern=IDENTIFIER)]
