"""What a doctor check found: one line per check, a status, and a fix for each problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
ENV_FILE = "deploy/iot_mlops.env.example"
PG_FORM = "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DATABASE"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return f"{text}  -> fix: {self.fix}" if self.fix and self.status in (FAIL, WARN) else text


@dataclass
class Context:
    """What later checks need from earlier ones."""

    settings: Any = None
    profiles_ok: bool = False
    dagster_db: tuple | None = None
    checks: list[Check] = field(default_factory=list)
