"""Online predictions: resolve a device to its fleet and latest features, score with the champion (and the
challenger in shadow), record every prediction in the operational store, and shape the responses."""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iot_mlops.features.online import TABLE as ONLINE_TABLE
from iot_mlops.lake import Lake
from iot_mlops.opstore.predictions import NO_ALERT, PredictionLog, new_prediction_id
from iot_mlops.profiles import FleetProfile
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION
from iot_mlops.serving import schemas
from iot_mlops.serving.models import ANOMALY, Loaded, ModelCache, ModelSpec
from iot_mlops.serving.scoring import ANOMALOUS, AnomalyScorer, FailureScorer, Inputs, Scored


class ServingError(Exception):
    """An error with its HTTP status: the request was understood, and cannot be served."""

    status = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(ServingError):
    status = 404


class Unavailable(ServingError):
    status = 503


@dataclass(frozen=True)
class FeatureTable:
    """One read of a fleet's online features file, immutable; rows by device id.

    Each model's view of the table (its inputs, prepared for all rows at once) is made on first use and kept
    with the table, so a request only picks rows; it goes when the table or the model goes.
    """

    frame: pd.DataFrame
    rows: dict[str, int]
    identity: tuple
    ts: list[datetime]
    _inputs: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def missing(self, scorer: FailureScorer | AnomalyScorer) -> list[str]:
        """Inputs of the scorer that the table lacks."""
        known = self._inputs.get(scorer)
        return [] if known is not None else [c for c in scorer.inputs if c not in self.frame.columns]

    def inputs(self, scorer: FailureScorer | AnomalyScorer) -> Inputs:
        prepared = self._inputs.get(scorer)
        if prepared is None:
            with self._lock:
                prepared = self._inputs.get(scorer)
                if prepared is None:
                    prepared = self._inputs[scorer] = scorer.prepare(self.frame)
        return prepared


class OnlineFeatures:
    """The online features table of each fleet, re-read only when the file changes.

    get_device_features opens the file with DuckDB on every call (milliseconds); serving checks the file's
    identity with one stat instead, at most every `recheck_seconds` once the table is loaded (a stat per request
    was 5% of the prediction path's CPU). Feature materializations replace the file atomically (rename), so a new
    inode or mtime means new rows.
    """

    def __init__(self, lake_root: Path, recheck_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.lake, self.recheck_seconds, self.clock = Lake(lake_root), recheck_seconds, clock
        self._tables: dict[str, FeatureTable] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def table(self, fleet: str) -> FeatureTable | None:
        cached, now = self._tables.get(fleet), self.clock()
        if cached is not None and now - self._checked[fleet] < self.recheck_seconds:
            return cached
        path = self.lake.table_file(fleet, ONLINE_TABLE)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if cached is not None and cached.identity == identity:
            self._checked[fleet] = now
            return cached
        with self._lock:
            cached = self._tables.get(fleet)
            if cached is None or cached.identity != identity:
                frame = pd.read_parquet(path)
                rows = {str(d): i for i, d in enumerate(frame["device_id"])}
                cached = self._tables[fleet] = FeatureTable(frame, rows, identity, [_utc(t) for t in frame["ts"]])
            self._checked[fleet] = now
        return cached


@dataclass(frozen=True)
class Job:
    """One device to score, resolved: its fleet, the model answering the prediction type, and its feature row."""

    profile: FleetProfile
    spec: ModelSpec
    device_type: str
    device_id: str
    table: FeatureTable
    row: int


def _utc(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    return (ts.tz_convert(UTC) if ts.tzinfo else ts.tz_localize(UTC)).to_pydatetime()


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class PredictionService:
    """Everything a prediction request needs, shared by the single and the batch endpoint."""

    def __init__(self, profiles: dict[str, FleetProfile], cache: ModelCache, features: OnlineFeatures, log: PredictionLog):
        self.profiles, self.cache, self.features, self.log = profiles, cache, features, log
        self.by_device_type = {p.device_type: p for p in profiles.values()}
        self.specs = {(s.fleet, s.prediction_type): s for s in cache.specs.values()}

    def resolve(self, device_type: str, device_id: str, prediction_type: str) -> Job:
        profile = self.by_device_type.get(device_type)
        if profile is None:
            raise NotFound(f"unknown device type {device_type!r}; known: {sorted(self.by_device_type)}")
        spec = self.specs.get((profile.name, prediction_type))
        if spec is None:
            known = sorted(t for f, t in self.specs if f == profile.name)
            raise NotFound(f"unknown prediction type {prediction_type!r} for {device_type}; known: {known}")
        table = self.features.table(profile.name)
        row = table.rows.get(device_id) if table is not None else None
        if row is None:
            raise NotFound(f"unknown device {device_id!r}: fleet {profile.name} has no online features for it")
        return Job(profile, spec, device_type, device_id, table, row)

    def predict(self, jobs: list[Job]) -> list[schemas.PredictionOut | ServingError]:
        """Score and record resolved jobs; one store transaction for all of them."""
        results, records = self.score(jobs)
        self.log.record_many(records)
        return results

    def score(self, jobs: list[Job]) -> tuple[list[schemas.PredictionOut | ServingError], list[dict]]:
        """Score resolved jobs, grouped by model and feature table: their responses, and the records to store first."""
        results: list[Any] = [None] * len(jobs)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            groups[(job.spec.name, id(job.table))].append(i)
        records = []
        now = datetime.now(UTC)
        for (name, _), indices in groups.items():
            champion = self.cache.get(name, CHAMPION)
            if champion is None:
                error = Unavailable(f"no champion for model {name} yet: train it and let the champion gate promote a version")
                for i in indices:
                    results[i] = error
                continue
            challenger = self.cache.get(name, CHALLENGER)
            if challenger is not None and challenger.version == champion.version:
                challenger = None
            table = jobs[indices[0]].table
            missing = table.missing(champion.scorer) + (table.missing(challenger.scorer) if challenger else [])
            if missing:
                error = Unavailable(f"online features of {jobs[indices[0]].profile.name} lack columns the model needs: "
                                    f"{missing[:10]}; re-materialize the features")
                for i in indices:
                    results[i] = error
                continue
            rows = np.fromiter((jobs[i].row for i in indices), dtype=np.intp, count=len(indices))
            scored = champion.scorer.score_rows(table.inputs(champion.scorer), rows)
            shadow = challenger.scorer.score_rows(table.inputs(challenger.scorer), rows, explain_rows=False) if challenger else None
            for position, i in enumerate(indices):
                record, results[i] = self._output(jobs[i], champion, scored, position, challenger, shadow, now)
                records.append(record)
        return results, records

    def _output(self, job: Job, model: Loaded, scored: Scored, i: int, challenger: Loaded | None, shadow: Scored | None,
                now: datetime) -> tuple[dict, schemas.PredictionOut]:
        spec, profile = job.spec, job.profile
        ts = job.table.ts[job.row]
        age = (now - ts).total_seconds()
        max_age = profile.features.max_age.total_seconds()
        label = scored.labels[i]
        if spec.is_anomaly:
            score = float(scored.scores[i])
            probabilities, alerts = {}, [ANOMALY] if label == ANOMALOUS else []
            stored = {ANOMALY: score}
            predicted = ANOMALY if label == ANOMALOUS else NO_ALERT
        else:
            score = None
            probabilities = {c: round(float(p), 6) for c, p in zip(spec.components, scored.probabilities[i])}
            alerts = [c for c, a in zip(spec.components, scored.alerts[i]) if a]
            stored, predicted = probabilities, label
        prediction_id = new_prediction_id()
        record = dict(prediction_id=prediction_id, fleet=profile.name, device_id=job.device_id, ts=ts, model_name=spec.name,
                      model_version=model.version, predicted_component=predicted, probabilities=stored, source="api",
                      shadow=_shadow(spec, challenger, shadow, i) if challenger is not None else None)
        e = scored.explanations[i]
        out = schemas.PredictionOut(
            prediction_id=prediction_id, fleet=profile.name, device_type=job.device_type, device_id=job.device_id,
            prediction_type=spec.prediction_type, model=schemas.ModelRef(name=spec.name, version=model.version),
            label=label, probabilities=probabilities, alerts=alerts,
            anomaly_score=round(score, 6) if score is not None else None,
            features=schemas.FeatureInfo(ts=ts, age_seconds=round(age, 3), max_age_seconds=max_age, stale=age > max_age),
            explanation=schemas.ExplanationOut(
                method=e.method, unit=e.unit, target=e.target, base_value=e.base_value, output=e.output,
                top=[schemas.ContributionOut(feature=c.feature, value=c.value, contribution=c.contribution) for c in e.top]),
        )
        return record, out


def _shadow(spec: ModelSpec, challenger: Loaded, shadow: Scored, i: int) -> dict:
    """What the challenger said about the same row: stored with the prediction, never returned."""
    out: dict[str, Any] = {"model_version": challenger.version, "label": shadow.labels[i]}
    if spec.is_anomaly:
        out["anomaly_score"] = _finite(float(shadow.scores[i]))
    else:
        out["probabilities"] = {c: _finite(round(float(p), 6)) for c, p in zip(spec.components, shadow.probabilities[i])}
        out["alerts"] = [c for c, a in zip(spec.components, shadow.alerts[i]) if a]
    return out
