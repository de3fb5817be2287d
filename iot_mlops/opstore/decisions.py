"""The decision log: every alias move and retraining decision, with its reason, in the operational store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from iot_mlops.opstore.engine import engine_for
from iot_mlops.opstore.schema import ACTIONS, decisions


@dataclass(frozen=True)
class Decision:
    id: int
    created_at: datetime
    fleet: str
    model_name: str | None
    action: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str
    run_id: str | None
    details: dict[str, Any] | None


class DecisionLog:
    """Append-only log over one store URL (SQLite by default, Postgres in production)."""

    def __init__(self, url: str):
        self.engine = engine_for(url)

    def record(self, fleet: str, action: str, reason: str, actor: str, model_name: str | None = None,
               from_version: str | None = None, to_version: str | None = None, run_id: str | None = None,
               details: dict[str, Any] | None = None) -> int:
        """Append one decision; returns its id."""
        if action not in ACTIONS:
            raise ValueError(f"unknown decision action {action!r}; expected one of {sorted(ACTIONS)}")
        row = dict(created_at=datetime.now(UTC).replace(tzinfo=None), fleet=fleet, model_name=model_name, action=action,
                   from_version=from_version, to_version=to_version, reason=reason, actor=actor, run_id=run_id, details=details)
        with self.engine.begin() as conn:
            return int(conn.execute(decisions.insert().values(**row)).inserted_primary_key[0])

    def list(self, fleet: str | None = None, model_name: str | None = None, actions: set[str] | None = None,
             limit: int | None = None, run_id: str | None = None) -> list[Decision]:
        """Decisions, oldest first."""
        query = sa.select(decisions).order_by(decisions.c.id)
        if fleet:
            query = query.where(decisions.c.fleet == fleet)
        if model_name:
            query = query.where(decisions.c.model_name == model_name)
        if actions:
            query = query.where(decisions.c.action.in_(sorted(actions)))
        if run_id:
            query = query.where(decisions.c.run_id == run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        out = [Decision(**row) for row in rows]
        return out[-limit:] if limit else out
