"""The operational store of predictions and their feedback (SQLAlchemy; SQLite by default, Postgres in production)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from iot_mlops.monitoring.sqlite_writes import write_lock

FeedbackType = Literal["false_positive", "false_negative", "correct", "unclear"]
FeedbackSource = Literal["technician", "app", "system"]
FEEDBACK_TYPES, FEEDBACK_SOURCES = get_args(FeedbackType), get_args(FeedbackSource)
PREDICTION_SOURCES = ("batch", "api")
NO_ALERT = "none"
CHUNK = 5000

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions", metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),
    sa.Column("fleet", sa.String(64), nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("ts", sa.DateTime, nullable=False),  # feature timestamp, UTC
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(16), nullable=False),
    sa.Column("predicted_component", sa.String(64), nullable=False),
    sa.Column("probabilities", sa.JSON, nullable=False),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("shadow", sa.JSON(none_as_null=True), nullable=True),  # a challenger's output on the same request
    sa.CheckConstraint(f"source IN {PREDICTION_SOURCES}", name="ck_predictions_source"),
    sa.Index("ix_predictions_fleet_ts", "fleet", "ts"),
)
feedback = sa.Table(
    "feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"), nullable=False, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("outcome_component", sa.String(64), nullable=True),
    sa.Column("outcome_at", sa.DateTime, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    sa.CheckConstraint(f"type IN {FEEDBACK_TYPES}", name="ck_feedback_type"),
    sa.CheckConstraint(f"source IN {FEEDBACK_SOURCES}", name="ck_feedback_source"),
    sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_feedback_rating"),
)

# A table of its own rather than a column of `feedback`: create_all adds it to a store made before it existed.
idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("principal", sa.String(128), primary_key=True),  # keys are scoped per API key (its name)
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # SHA-256 of the request the key answered
    sa.Column("feedback_id", sa.Integer, sa.ForeignKey("feedback.id"), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)


class FeedbackError(ValueError):
    """Feedback refused; nothing was stored."""


class UnknownPredictionError(FeedbackError):
    """Feedback about a prediction id the store does not hold (an HTTP 404 rather than a 422)."""


class IdempotencyKeyReused(Exception):
    """An idempotency key sent again with a different request (an HTTP 409); nothing was stored."""


class _KeyTaken(Exception):
    """A concurrent request with the same idempotency key committed first."""


def utc_naive(value: datetime) -> datetime:
    """Timestamps are stored as naive UTC; naive input is taken as UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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


@functools.lru_cache(maxsize=16)
def engine_for(url: str, autocheckpoint: bool = True) -> sa.Engine:
    """One engine per store URL and process, tables created; SQLite in WAL mode with locking write transactions.

    `autocheckpoint=False`: SQLite commits never run a WAL checkpoint (see sqlite_writes.WalCheckpointer).
    """
    if url.startswith("postgresql://"):
        from iot_mlops.settings import psycopg2_url

        url = psycopg2_url(url)
    sqlite = url.startswith("sqlite")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"timeout": 30} if sqlite else {})
    if sqlite:
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
            # WAL with synchronous=NORMAL: a commit survives the process crashing, not a power cut (no fsync per
            # commit; checkpoints still sync). Production stores are Postgres.
            # journal_size_limit: a WAL that was long is cut back to 64 MB when it starts over.
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON", "busy_timeout = 30000",
                           f"wal_autocheckpoint = {1000 if autocheckpoint else 0}", "journal_size_limit = 67108864"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            # A deferred read-then-write transaction fails at once (SQLITE_BUSY) when another writer got in
            # between; IMMEDIATE takes the write lock up front and waits for it.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
    from iot_mlops.registry.decisions import metadata as decisions_metadata  # the decision log shares the store

    for tables in (metadata, decisions_metadata):
        try:
            tables.create_all(engine)
        except (sa.exc.ProgrammingError, sa.exc.IntegrityError, sa.exc.OperationalError):
            tables.create_all(engine)  # another process created the tables between our check and our CREATE
    return engine


class _Store:
    def __init__(self, url_or_engine: str | sa.Engine):
        self.engine = engine_for(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with write_lock(self.engine), self.engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                yield conn


class PredictionLog(_Store):
    """Every prediction served or scored in batch, with its model version and (optionally) a challenger's shadow output."""

    def record_batch(self, fleet: str, frame: pd.DataFrame, source: str = "batch") -> int:
        """Record a predictions partition (prediction_id, device_id, ts, model_name, model_version, p_<component>...,
        predicted_component); ids already stored are skipped, so re-recording a day adds nothing. Returns rows added."""
        _check_source(source)
        if frame.empty:
            return 0
        components = [c.removeprefix("p_") for c in frame.columns if c.startswith("p_")]
        if not components:
            raise ValueError("predictions frame has no p_<component> probability columns")
        probs = frame[[f"p_{c}" for c in components]].to_numpy(dtype=float)
        ts = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True)).tz_localize(None).to_pydatetime()
        created = _now()
        rows = [
            {"prediction_id": str(pid), "fleet": fleet, "device_id": str(dev), "ts": t, "model_name": str(name),
             "model_version": str(version), "predicted_component": str(pred), "source": source, "created_at": created,
             "probabilities": {c: (None if math.isnan(p) else float(p)) for c, p in zip(components, row)}}
            for pid, dev, t, name, version, pred, row in zip(frame["prediction_id"], frame["device_id"], ts, frame["model_name"],
                                                             frame["model_version"], frame["predicted_component"], probs)
        ]
        added = 0
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            with self._write() as conn:
                ids = [r["prediction_id"] for r in chunk]
                known = set(conn.execute(sa.select(predictions.c.prediction_id).where(predictions.c.prediction_id.in_(ids))).scalars())
                new = [r for r in chunk if r["prediction_id"] not in known]
                if new:  # RETURNING makes SQLAlchemy batch the rows into multi-row INSERTs (psycopg2's executemany is row by row)
                    added += len(conn.execute(_insert_ignoring_duplicates(conn).returning(predictions.c.prediction_id), new).all())
        return added

    def record(self, *, fleet: str, device_id: str, ts: datetime, model_name: str, model_version: str,
               predicted_component: str, probabilities: Mapping[str, float], source: str = "api",
               shadow: Mapping[str, Any] | None = None, prediction_id: str | None = None) -> str:
        """Record one prediction (an online one by default); returns its id."""
        return self.record_many([dict(fleet=fleet, device_id=device_id, ts=ts, model_name=model_name, model_version=model_version,
                                      predicted_component=predicted_component, probabilities=probabilities, source=source,
                                      shadow=shadow, prediction_id=prediction_id)])[0]

    def record_many(self, records: list[Mapping[str, Any]]) -> list[str]:
        """Record several predictions (each with `record`'s keyword arguments) in one transaction; returns their ids."""
        rows = [_prediction_row(**r) for r in records]
        if rows:
            insert = _inserter(self.engine.dialect, predictions, rows)  # before the write lock: it is held shorter
            with self._write() as conn:
                insert(conn)
        return [r["prediction_id"] for r in rows]

    def get(self, prediction_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(predictions).where(predictions.c.prediction_id == prediction_id)).mappings().first()
        return dict(row) if row else None

    def count(self, fleet: str | None = None, source: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(predictions)
        if fleet:
            query = query.where(predictions.c.fleet == fleet)
        if source:
            query = query.where(predictions.c.source == source)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def newest_alert(self, fleet: str) -> dict[str, Any] | None:
        """The newest prediction of the fleet that raised an alert and has no feedback yet, or None."""
        answered = sa.select(feedback.c.prediction_id).where(feedback.c.prediction_id == predictions.c.prediction_id)
        query = (sa.select(predictions).where(predictions.c.fleet == fleet, predictions.c.predicted_component != NO_ALERT,
                                              ~answered.exists())
                 .order_by(predictions.c.ts.desc(), predictions.c.prediction_id).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None


def _prediction_row(*, fleet: str, device_id: str, ts: datetime, model_name: str, model_version: str, predicted_component: str,
                    probabilities: Mapping[str, float], source: str = "api", shadow: Mapping[str, Any] | None = None,
                    prediction_id: str | None = None) -> dict[str, Any]:
    _check_source(source)
    if predicted_component != NO_ALERT and predicted_component not in probabilities:
        raise ValueError(f"predicted component {predicted_component!r} is not one of {sorted(probabilities)}")
    return dict(prediction_id=prediction_id or new_prediction_id(), fleet=fleet, device_id=str(device_id), ts=utc_naive(ts),
                model_name=model_name, model_version=str(model_version), predicted_component=predicted_component,
                probabilities={k: float(v) for k, v in probabilities.items()}, source=source, created_at=_now(),
                shadow=dict(shadow) if shadow is not None else None)


def _inserter(dialect: sa.Dialect, table: sa.Table, rows: list[dict[str, Any]]) -> Callable[[sa.Connection], Any]:
    """INSERT of the rows, its parameters ready. On SQLite straight through the driver's executemany, with the
    columns' own bind processors (SQLAlchemy's per-row parameter handling costs more than SQLite's insert: it is
    the serving hot path)."""
    if dialect.name != "sqlite":
        return lambda conn: conn.execute(table.insert(), rows)
    columns = list(table.columns)
    processors = [column.type.bind_processor(dialect) for column in columns]
    names, marks = ", ".join(c.name for c in columns), ", ".join("?" * len(columns))
    params = [tuple(p(r[c.name]) if p else r[c.name] for c, p in zip(columns, processors)) for r in rows]
    return lambda conn: conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", params)


def new_prediction_id() -> str:
    """A UUIDv7: the time first, so ids of new predictions land together in the primary-key index (a random UUID
    touches a random index page per row, which multiplies what each commit writes)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def _check_source(source: str) -> None:
    if source not in PREDICTION_SOURCES:
        raise ValueError(f"unknown prediction source {source!r}; expected one of {list(PREDICTION_SOURCES)}")


def _insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table = predictions):
    """INSERT that skips rows whose primary key a concurrent writer stored first."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return table.insert()
    return insert(table).on_conflict_do_nothing(index_elements=[c.name for c in table.primary_key])


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


class FeedbackStore(_Store):
    """Feedback about stored predictions: validated on the way in, summarized for the sensors."""

    def add(self, prediction_id: str, data: FeedbackIn | Mapping[str, Any], *, received_at: datetime | None = None) -> int:
        """Store one feedback record; returns its id. Raises FeedbackError (storing nothing) on invalid feedback."""
        fb = validate_feedback(data)
        with self._write() as conn:
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
            with self._write() as conn:
                first = conn.execute(first_query).first()
                if first is None:
                    stored = self._insert(conn, prediction_id, fb, None)
                    row = dict(principal=principal, idempotency_key=key, fingerprint=fingerprint, feedback_id=stored,
                               created_at=_now())
                    # On Postgres a concurrent claim of the key makes this wait for that transaction, then skip.
                    if conn.execute(_insert_ignoring_duplicates(conn, idempotency_keys), row).rowcount != 1:
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
        row = dict(prediction_id=prediction_id, created_at=utc_naive(received_at) if received_at else _now(), **fb.model_dump())
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
