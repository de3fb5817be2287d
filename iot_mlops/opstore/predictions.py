"""Every prediction served or scored in batch, with its model version and (optionally) a challenger's shadow output."""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from iot_mlops.opstore.engine import engine_for, insert_ignoring_duplicates, write_transaction
from iot_mlops.opstore.schema import PREDICTION_SOURCES, feedback, predictions

NO_ALERT = "none"
CHUNK = 5000


def utc_naive(value: datetime) -> datetime:
    """Timestamps are stored as naive UTC; naive input is taken as UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_prediction_id() -> str:
    """A UUIDv7: the time first, so ids of new predictions land together in the primary-key index (a random UUID
    touches a random index page per row, which multiplies what each commit writes)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


class PredictionLog:
    """The predictions table of one store."""

    def __init__(self, url_or_engine: str | sa.Engine):
        self.engine = engine_for(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine

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
        created = now()
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
            with write_transaction(self.engine) as conn:
                ids = [r["prediction_id"] for r in chunk]
                known = set(conn.execute(sa.select(predictions.c.prediction_id).where(predictions.c.prediction_id.in_(ids))).scalars())
                new = [r for r in chunk if r["prediction_id"] not in known]
                if new:  # RETURNING makes SQLAlchemy batch the rows into multi-row INSERTs (psycopg2's executemany is row by row)
                    inserted = insert_ignoring_duplicates(conn, predictions).returning(predictions.c.prediction_id)
                    added += len(conn.execute(inserted, new).all())
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
            with write_transaction(self.engine) as conn:
                conn.execute(predictions.insert(), rows)
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
                probabilities={k: float(v) for k, v in probabilities.items()}, source=source, created_at=now(),
                shadow=dict(shadow) if shadow is not None else None)


def _check_source(source: str) -> None:
    if source not in PREDICTION_SOURCES:
        raise ValueError(f"unknown prediction source {source!r}; expected one of {list(PREDICTION_SOURCES)}")
