"""Model endpoints' logic: registered models, their history, rollback, and the daily champion-vs-challenger comparison."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from iot_mlops.opstore.decisions import Decision, DecisionLog
from iot_mlops.opstore.schema import predictions
from iot_mlops.registry.lifecycle import history, rollback
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION, ModelRegistry
from iot_mlops.serving import schemas
from iot_mlops.serving.models import ANOMALY, ModelCache

SHADOW_CHUNK = 5000


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities (e.g. a metric without positives) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _serving(cache: ModelCache, name: str) -> schemas.ServingState | None:
    if name not in cache.specs:
        return None
    versions = [cache.get(name, alias) for alias in (CHAMPION, CHALLENGER)]
    return schemas.ServingState(champion=versions[0].version if versions[0] else None,
                                challenger=versions[1].version if versions[1] else None)


def list_models(registry: ModelRegistry, cache: ModelCache) -> list[schemas.ModelSummaryOut]:
    return [schemas.ModelSummaryOut(name=m.name, champion=m.champion, challenger=m.challenger, latest_version=m.latest_version,
                                    versions=m.versions, serving=_serving(cache, m.name))
            for m in registry.list_models()]


def model_detail(registry: ModelRegistry, cache: ModelCache, name: str) -> schemas.ModelDetailOut:
    """Versions (oldest first) with aliases, tags and metrics; raises ModelNotFound."""
    versions = registry.versions(name)
    alias = {a: v.version for v in versions for a in v.aliases}
    spec = cache.specs.get(name)
    return schemas.ModelDetailOut(
        name=name, fleet=spec.fleet if spec else None, prediction_type=spec.prediction_type if spec else None,
        champion=alias.get(CHAMPION), challenger=alias.get(CHALLENGER), serving=_serving(cache, name),
        versions=[schemas.VersionOut(version=v.version, aliases=list(v.aliases), tags=v.tags, run_id=v.run_id,
                                     metrics=_clean(v.metrics), created_at=v.created_at) for v in versions])


def decision_out(d: Decision) -> schemas.DecisionOut:
    created = d.created_at if d.created_at.tzinfo else d.created_at.replace(tzinfo=UTC)  # the log stores naive UTC
    return schemas.DecisionOut(id=d.id, created_at=created, fleet=d.fleet, model_name=d.model_name, action=d.action,
                               from_version=d.from_version, to_version=d.to_version, reason=d.reason, actor=d.actor,
                               run_id=d.run_id, details=_clean(d.details))


def model_history(log: DecisionLog, name: str) -> schemas.HistoryOut:
    return schemas.HistoryOut(name=name, decisions=[decision_out(d) for d in history(log, name)])


def rollback_model(registry: ModelRegistry, log: DecisionLog, cache: ModelCache, name: str, reason: str,
                   actor: str) -> schemas.DecisionOut:
    """The CLI's rollback (lifecycle.rollback, logged), then this process swaps at once instead of at the next poll."""
    registry.versions(name)  # ModelNotFound (404) before RollbackError (409)
    decision = rollback(registry, log, name=name, actor=actor, reason=reason)
    if name in cache.specs:
        cache.refresh([name])
    return decision_out(decision)


def _comparison(champion: list[float], challenger: list[float], alerts: tuple[int, int]) -> schemas.ComponentComparison:
    n = len(champion)
    return schemas.ComponentComparison(
        champion_mean=round(sum(champion) / n, 6), challenger_mean=round(sum(challenger) / n, 6),
        mean_abs_difference=round(sum(abs(a - b) for a, b in zip(champion, challenger)) / n, 6),
        champion_alerts=alerts[0], challenger_alerts=alerts[1])


def shadow_comparison(engine: sa.Engine, name: str, day: date) -> schemas.ShadowOut:
    """Champion vs challenger on the day's live traffic (UTC), from the shadow outputs stored with each prediction."""
    start = datetime.combine(day, time())
    query = (sa.select(predictions.c.model_version, predictions.c.predicted_component, predictions.c.probabilities,
                       predictions.c.shadow)
             .where(predictions.c.model_name == name, predictions.c.source == "api",
                    predictions.c.created_at >= start, predictions.c.created_at < start + timedelta(days=1)))
    total, champions, challengers, agree = 0, Counter(), Counter(), 0
    pairs: dict[str, tuple[list[float], list[float]]] = {}
    alerts: Counter = Counter()
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=SHADOW_CHUNK).execute(query):
            total += 1
            champions[row.model_version] += 1
            shadow = row.shadow
            if not shadow:
                continue
            challengers[str(shadow.get("model_version"))] += 1
            anomaly = "anomaly_score" in shadow
            mine = ("anomalous" if row.predicted_component == ANOMALY else "normal") if anomaly else row.predicted_component
            agree += mine == shadow.get("label")
            theirs = {ANOMALY: shadow["anomaly_score"]} if anomaly else shadow.get("probabilities") or {}
            for key, value in row.probabilities.items():
                if value is None or theirs.get(key) is None:
                    continue
                a, b = pairs.setdefault(key, ([], []))
                a.append(float(value))
                b.append(float(theirs[key]))
                alerts[(key, 0)] += mine == ("anomalous" if anomaly else key)
                alerts[(key, 1)] += shadow.get("label") == ("anomalous" if anomaly else key)
    shadowed = sum(challengers.values())
    compared = {k: _comparison(a, b, (alerts[(k, 0)], alerts[(k, 1)])) for k, (a, b) in sorted(pairs.items())}
    anomaly_part = compared.pop(ANOMALY, None)
    return schemas.ShadowOut(model=name, day=day, predictions=total, shadowed=shadowed, champion_versions=dict(champions),
                             challenger_versions=dict(challengers), label_agreement=round(agree / shadowed, 6) if shadowed else None,
                             components=compared, anomaly_score=anomaly_part)
