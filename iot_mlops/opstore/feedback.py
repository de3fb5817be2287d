"""Feedback about stored predictions: validated on the way in, once per idempotency key, summarized for the sensors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from iot_mlops.opstore.engine import engine_for, insert_ignoring_duplicates, write_transaction
from iot_mlops.opstore.predictions import NO_ALERT, now, utc_naive
from iot_mlops.opstore.schema import FEEDBACK_TYPES, FeedbackSource, FeedbackType, feedback, idempotency_keys, predictions


class FeedbackError(ValueError):
    """Feedback refused; nothing was stored."""


class UnknownPredictionError(FeedbackError):
    """Feedback about a prediction id the store does not hold (an HTTP 404 rather than a 422)."""


class IdempotencyKeyReused(Exception):
    """An idempotency key sent again with a different request (an HTTP 409); nothing was stored."""


class _KeyTaken(Exception):
    """A concurrent request with the same idempotency key committed first."""


class FeedbackIn(BaseModel):
    """One feedback record about a prediction: also the request body of the HTTP feedback endpoint."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: FeedbackType
    rating: int = Field(ge=1, le=5)
    source: FeedbackSource
    outcome_component: str | None = Field(None, min_length=1, max_length=64)
    # Not strict: JSON carries timestamps as ISO strings.
    outcome_at: Annotated[datetime | None, Field(strict=False)] = None
    comment: str | None = Field(None, max_length=4000)

    @field_validator("outcome_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        try:
            return utc_naive(value) if value else value
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is a time before year 1 in UTC
            raise ValueError("outcome_at is out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _outcome(self) -> FeedbackIn:
        if self.outcome_at is not None and self.outcome_component is None:
            raise ValueError("outcome_at needs outcome_component: say which component failed")
        return self


@dataclass(frozen=True)
class FeedbackRecord:
    id: int
    prediction_id: str
    type: str
    rating: int
    outcome_component: str | None
    outcome_at: datetime | None
    comment: str | None
    source: str
    created_at: datetime
    fleet: str
    device_id: str
    model_version: str
    predicted_component: str


@dataclass(frozen=True)
class FeedbackStats:
    """Feedback received since a time: what the feedback sensor reads."""

    count: int
    by_type: dict[str, int]
    alert_feedback: int  # false_positive + correct on predictions that raised an alert
    false_positive_rate: float | None  # None without alert feedback


def validate_feedback(data: FeedbackIn | Mapping[str, Any]) -> FeedbackIn:
    """The feedback as a FeedbackIn, or a FeedbackError naming every invalid field."""
    if isinstance(data, FeedbackIn):
        return data
    try:
        return FeedbackIn.model_validate(dict(data))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'feedback'}: {e['msg']}" for e in error.errors())
        raise FeedbackError(f"invalid feedback: {problems}") from None


def feedback_fingerprint(prediction_id: str, fb: FeedbackIn) -> str:
    """SHA-256 of a feedback request as validated: the same for the same content, whatever its JSON spelling."""
    return hashlib.sha256(json.dumps([prediction_id, fb.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()


class FeedbackStore:
    """The feedback and idempotency-key tables of one store."""

    def __init__(self, url_or_engine: str | sa.Engine):
        self.engine = engine_for(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine

    def add(self, prediction_id: str, data: FeedbackIn | Mapping[str, Any], *, received_at: datetime | None = None) -> int:
        """Store one feedback record; returns its id. Raises FeedbackError (storing nothing) on invalid feedback."""
        fb = validate_feedback(data)
        with write_transaction(self.engine) as conn:
            return self._insert(conn, prediction_id, fb, received_at)

    def add_once(self, prediction_id: str, data: FeedbackIn | Mapping[str, Any], *, principal: str,
                 key: str) -> tuple[int, bool]:
        """`add` at most once per (principal, key): (id, False) when stored, (the first id, True) for a repeat of the
        same request, which stores nothing. Raises IdempotencyKeyReused for the key with another request."""
        fb = validate_feedback(data)
        fingerprint = feedback_fingerprint(prediction_id, fb)
        claim = (idempotency_keys.c.principal == principal) & (idempotency_keys.c.idempotency_key == key)
        first_query = sa.select(idempotency_keys.c.fingerprint, idempotency_keys.c.feedback_id).where(claim)
        try:
            with write_transaction(self.engine) as conn:
                first = conn.execute(first_query).first()
                if first is None:
                    stored = self._insert(conn, prediction_id, fb, None)
                    row = dict(principal=principal, idempotency_key=key, fingerprint=fingerprint, feedback_id=stored,
                               created_at=now())
                    # On Postgres a concurrent claim of the key makes this wait for that transaction, then skip.
                    if conn.execute(insert_ignoring_duplicates(conn, idempotency_keys), row).rowcount != 1:
                        raise _KeyTaken()  # rolls our feedback back
                    return stored, False
        except _KeyTaken:
            with self.engine.connect() as conn:
                first = conn.execute(first_query).one()
        if first.fingerprint != fingerprint:
            raise IdempotencyKeyReused(f"idempotency key {key!r} was used for a different request (feedback "
                                       f"{first.feedback_id}); send a new key for a new request")
        return int(first.feedback_id), True

    def _insert(self, conn: sa.Connection, prediction_id: str, fb: FeedbackIn, received_at: datetime | None) -> int:
        pred = conn.execute(sa.select(predictions.c.fleet, predictions.c.predicted_component, predictions.c.probabilities)
                            .where(predictions.c.prediction_id == prediction_id)).first()
        if pred is None:
            raise UnknownPredictionError(f"unknown prediction id {prediction_id!r}")
        components = sorted(pred.probabilities)
        if fb.outcome_component is not None and fb.outcome_component not in components:
            raise FeedbackError(f"outcome component {fb.outcome_component!r} is not a component of fleet {pred.fleet} "
                                f"({', '.join(components)})")
        if fb.type == "false_positive" and pred.predicted_component == NO_ALERT:
            raise FeedbackError(f"prediction {prediction_id} raised no alert, so it cannot be a false positive")
        row = dict(prediction_id=prediction_id, created_at=utc_naive(received_at) if received_at else now(), **fb.model_dump())
        return int(conn.execute(feedback.insert().values(**row)).inserted_primary_key[0])

    def _joined(self, fleet: str | None, since: datetime | None, until: datetime | None) -> sa.Select:
        query = (sa.select(feedback, predictions.c.fleet, predictions.c.device_id, predictions.c.model_version,
                           predictions.c.predicted_component)
                 .join(predictions, predictions.c.prediction_id == feedback.c.prediction_id).order_by(feedback.c.id))
        if fleet:
            query = query.where(predictions.c.fleet == fleet)
        if since is not None:
            query = query.where(feedback.c.created_at >= utc_naive(since))
        if until is not None:
            query = query.where(feedback.c.created_at < utc_naive(until))
        return query

    def list(self, fleet: str | None = None, limit: int | None = None, since: datetime | None = None,
             until: datetime | None = None) -> list[FeedbackRecord]:
        """Feedback records with their prediction's fleet, device and alert, oldest first (the last `limit`)."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._joined(fleet, since, until)).mappings().all()
        out = [FeedbackRecord(**row) for row in rows]
        return out[-limit:] if limit else out

    def frame(self, fleet: str, until: datetime | None = None) -> pd.DataFrame:
        """Feedback of a fleet received before `until`, joined with its prediction (adds ts and model_name)."""
        query = self._joined(fleet, None, until).add_columns(predictions.c.ts, predictions.c.model_name)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=[c.name for c in query.selected_columns])

    def feedback_since(self, fleet: str, since: datetime) -> FeedbackStats:
        """Counts by type and the false-positive rate among alert predictions, for feedback received since `since`."""
        return self._stats(fleet, feedback.c.created_at >= utc_naive(since))

    def feedback_on_predictions_after(self, fleet: str, after: datetime) -> FeedbackStats:
        """The same figures for feedback about predictions whose features are newer than `after` (data time)."""
        return self._stats(fleet, predictions.c.ts > utc_naive(after))

    def _stats(self, fleet: str, condition) -> FeedbackStats:
        alert = predictions.c.predicted_component != NO_ALERT
        query = (sa.select(feedback.c.type, sa.func.count().label("n"), sa.func.count().filter(alert).label("alerts"))
                 .join(predictions, predictions.c.prediction_id == feedback.c.prediction_id)
                 .where(predictions.c.fleet == fleet, condition).group_by(feedback.c.type))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        by_type = {t: 0 for t in FEEDBACK_TYPES} | {r.type: int(r.n) for r in rows}
        on_alerts = {r.type: int(r.alerts) for r in rows}
        fp, correct = on_alerts.get("false_positive", 0), on_alerts.get("correct", 0)
        return FeedbackStats(count=sum(by_type.values()), by_type=by_type, alert_feedback=fp + correct,
                             false_positive_rate=fp / (fp + correct) if fp + correct else None)
