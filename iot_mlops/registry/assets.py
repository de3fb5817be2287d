"""Dagster asset of one fleet's champion gate, with a check that the champion stays above its floor."""

from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from iot_mlops.lake.resource import LakeResource
from iot_mlops.profiles import FleetProfile
from iot_mlops.registry.champion_gate import gate_model
from iot_mlops.registry.gate import GatePolicy
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.training.assets import DECISION_TAG, failures_frame, trigger
from iot_mlops.training.dataset import load_dataset_report
from iot_mlops.training.runs import model_name

FLOOR_CHECK = "champion_above_floor"


class GateConfig(dg.Config):
    margin: float = Field(0.01, description="The challenger must beat the champion's macro F1 by this much.")
    floor: float = Field(0.5, description="Minimum macro F1 of any champion (the first model is promoted only above it).")
    recall_tolerance: float = Field(0.05, description="Largest drop of any component's recall a promotion may bring.")
    anomaly_floor: float = Field(0.6, description="Minimum ROC-AUC of the anomaly model against upcoming failures.")


def gate_assets(profile: FleetProfile, profile_dir: Path) -> list:
    fleet = profile.name
    key = dg.AssetKey([fleet, "champion_gate"])

    @dg.asset(
        key=key, group_name=fleet, owners=profile.owners, kinds={"mlflow"},
        deps=[dg.AssetKey([fleet, "failure_model"]), dg.AssetKey([fleet, "anomaly_model"]), dg.AssetKey([fleet, "training_dataset"])],
        description=(
            "Scores challenger and champion on the same most recent held-out window (the dataset's test part); moves "
            "alias `champion` only past the margin with no component's recall or the event recall dropping beyond the "
            "tolerance, and never to a model raising more false alarms per device-month than the profile's limit. "
            "Every decision goes to the decision log."
        ),
        check_specs=[dg.AssetCheckSpec(FLOOR_CHECK, asset=key, description="Each champion scores above its floor on the held-out window.")],
    )
    def champion_gate(context: dg.AssetExecutionContext, config: GateConfig, lake: LakeResource, registry: RegistryResource):
        dataset = load_dataset_report(lake.lake(), fleet)
        frame = pd.read_parquet(dataset.path)
        holdout = frame[frame["split"] == "test"]
        failures = failures_frame(lake, fleet)
        store, log = registry.registry(), registry.decision_log()
        actor = f"champion_gate:{trigger(context)}:{context.run.run_id[:8]}"
        # Links the gate's decision to the decision that started this run: a sensor's (run tag) or a manual one (same run).
        started_by = context.run.tags.get(DECISION_TAG) or next(
            (str(d.id) for d in log.list(fleet=fleet, actions={"retrain_triggered"}) if d.run_id == context.run.run_id), None)
        triggered_by = {"trigger": trigger(context), "trigger_decision_id": started_by}
        policies = {
            profile.target.prediction_type: GatePolicy("macro_f1", config.margin, config.floor, config.recall_tolerance,
                                                       profile.training.max_false_alarms_per_device_month),
            "anomaly": GatePolicy("any_failure_roc_auc", config.margin, config.anomaly_floor, 1.0),
        }
        outcomes = [
            gate_model(store, log, profile=profile, name=model_name(profile, kind), kind=kind, holdout=holdout,
                       failures=failures, policy=policy, actor=actor, run_id=context.run.run_id, context=triggered_by)
            for kind, policy in policies.items()
        ]
        metadata, below = {}, []
        for o in outcomes:
            metadata[o.model_name] = dg.MetadataValue.json({
                "challenger": o.challenger, "champion_before": o.champion_before, "champion_after": o.champion_after,
                "promoted": bool(o.decision and o.decision.promote), "reason": o.decision.reason if o.decision else "no challenger to gate",
                "challenger_score": o.decision.challenger_score if o.decision else None, "champion_score": o.champion_score,
            })
            if o.champion_after is None or o.champion_score is None or o.champion_score < o.policy.floor:
                below.append(o.model_name)
        check = dg.AssetCheckResult(check_name=FLOOR_CHECK, passed=not below,
                                    metadata={"below_floor_or_missing": dg.MetadataValue.json(below)})
        metadata["holdout_rows"] = len(holdout)
        return dg.MaterializeResult(metadata=metadata, check_results=[check])

    return [champion_gate]
