"""Score challenger and champion on the same held-out rows and move `champion` only past the gate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from iot_mlops.names import model_name
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.registry.gate import EVENT_RECALL, FALSE_ALARMS, GateDecision, GatePolicy, decide
from iot_mlops.registry.lifecycle import promote, reject
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION, ModelRegistry
from iot_mlops.training.evaluate import evaluate


@dataclass
class GateOutcome:
    model_name: str
    challenger: str | None
    champion_before: str | None
    champion_after: str | None
    decision: GateDecision | None
    champion_score: float | None  # the champion's primary score after the gate, on the held-out rows
    policy: GatePolicy


def _scores(kind: str, model, frame: pd.DataFrame, profile: FleetProfile, failures: pd.DataFrame) -> tuple[dict, dict]:
    if kind == "anomaly":
        from iot_mlops.training.anomaly import anomaly_metrics  # scikit-learn: loaded by the gate's run only

        return anomaly_metrics(model, frame, profile), {}
    result = evaluate(model, frame, profile, failures)
    events = {k: result.events[k] for k in (EVENT_RECALL, FALSE_ALARMS, "mean_lead_time_h")}
    return {"macro_f1": result.macro_f1, **events}, result.recalls()


def gate_model(registry: ModelRegistry, log: DecisionLog, *, profile: FleetProfile, name: str, kind: str,
               holdout: pd.DataFrame, failures: pd.DataFrame, policy: GatePolicy, actor: str,
               run_id: str | None = None, context: dict | None = None) -> GateOutcome:
    """Gate one registered model's challenger against its champion on `holdout`."""
    challenger, champion = registry.alias_version(name, CHALLENGER), registry.alias_version(name, CHAMPION)
    decision, champion_score = None, None
    champion_scores = champion_recall = None
    if champion:
        champion_scores, champion_recall = _scores(kind, registry.load_model(name, CHAMPION), holdout, profile, failures)
        champion_score = champion_scores[policy.primary_metric]
    if challenger and challenger != champion:
        scores, recall = _scores(kind, registry.load_model(name, CHALLENGER), holdout, profile, failures)
        decision = decide(policy, scores, champion_scores, recall, champion_recall)
        details = {"challenger": scores, "champion": champion_scores, "challenger_recall": recall,
                   "champion_recall": champion_recall, "holdout_rows": len(holdout),
                   "holdout": f"{holdout['ts'].min()}..{holdout['ts'].max()}"}
        details = _json_safe({**details, **(context or {})})
        moved = dict(fleet=profile.name, name=name, version=challenger, reason=decision.reason, actor=actor, details=details, run_id=run_id)
        if decision.promote:
            promote(registry, log, **moved)
            champion_score = decision.challenger_score
        else:
            reject(registry, log, **moved)
            registry.delete_alias(name, CHALLENGER)
    return GateOutcome(name, challenger, champion, registry.alias_version(name, CHAMPION), decision, champion_score, policy)


@dataclass
class GateRun:
    """Every model of a fleet gated on one held-out window."""

    outcomes: list[GateOutcome]
    holdout_rows: int

    @property
    def below_floor(self) -> list[str]:
        """Models without a champion, or whose champion scores below its floor."""
        return [o.model_name for o in self.outcomes
                if o.champion_after is None or o.champion_score is None or o.champion_score < o.policy.floor]

    @property
    def metadata(self) -> dict[str, object]:
        """Each model's verdict (JSON) and the held-out row count."""
        metadata: dict[str, object] = {o.model_name: {
            "challenger": o.challenger, "champion_before": o.champion_before, "champion_after": o.champion_after,
            "promoted": bool(o.decision and o.decision.promote), "reason": o.decision.reason if o.decision else "no challenger to gate",
            "challenger_score": o.decision.challenger_score if o.decision else None, "champion_score": o.champion_score,
        } for o in self.outcomes}
        return {**metadata, "holdout_rows": self.holdout_rows}


def gate_policies(profile: FleetProfile, margin: float, floor: float, recall_tolerance: float,
                  anomaly_floor: float) -> dict[str, GatePolicy]:
    """The gate's policy per model kind: the failure model's from the profile, the anomaly model's on ROC-AUC."""
    return {
        profile.target.prediction_type: GatePolicy("macro_f1", margin, floor, recall_tolerance,
                                                   profile.training.max_false_alarms_per_device_month),
        "anomaly": GatePolicy("any_failure_roc_auc", margin, anomaly_floor, 1.0),
    }


def gate_fleet(registry: ModelRegistry, log: DecisionLog, *, profile: FleetProfile, policies: dict[str, GatePolicy],
               holdout: pd.DataFrame, failures: pd.DataFrame, actor: str, run_id: str | None = None,
               context: dict | None = None) -> GateRun:
    """Gate each kind of model of the fleet on the same held-out rows."""
    outcomes = [
        gate_model(registry, log, profile=profile, name=model_name(profile.name, kind), kind=kind, holdout=holdout,
                   failures=failures, policy=policy, actor=actor, run_id=run_id, context=context)
        for kind, policy in policies.items()
    ]
    return GateRun(outcomes, len(holdout))


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
