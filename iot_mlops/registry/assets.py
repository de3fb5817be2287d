"""Dagster asset of one fleet's champion gate, with a check that the champion stays above its floor."""

import dagster as dg
import pandas as pd
from pydantic import Field

from iot_mlops.lake.resource import LakeResource
from iot_mlops.names import DECISION_TAG
from iot_mlops.partitions import FleetContext
from iot_mlops.registry.champion_gate import gate_fleet, gate_policies
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.training.assets import failures_frame, trigger
from iot_mlops.training.dataset import load_dataset_report

FLOOR_CHECK = "champion_above_floor"


class GateConfig(dg.Config):
    margin: float = Field(0.01, description="The challenger must beat the champion's macro F1 by this much.")
    floor: float = Field(0.5, description="Minimum macro F1 of any champion (the first model is promoted only above it).")
    recall_tolerance: float = Field(0.05, description="Largest drop of any component's recall a promotion may bring.")
    anomaly_floor: float = Field(0.6, description="Minimum ROC-AUC of the anomaly model against upcoming failures.")


def gate_assets(ctx: FleetContext) -> list:
    profile, fleet, key = ctx.profile, ctx.fleet, ctx.key("champion_gate")

    @dg.asset(
        key=key, group_name=fleet, owners=profile.owners, kinds={"mlflow"},
        deps=ctx.keys(("failure_model", "anomaly_model", "training_dataset")),
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
        log = registry.decision_log()
        # Links the gate's decision to the decision that started this run: a sensor's (run tag) or a manual one (same run).
        started_by = context.run.tags.get(DECISION_TAG) or next(
            (str(d.id) for d in log.list(fleet=fleet, actions={"retrain_triggered"}) if d.run_id == context.run.run_id), None)
        gate = gate_fleet(
            registry.registry(), log, profile=profile, holdout=frame[frame["split"] == "test"], failures=failures_frame(lake, fleet),
            policies=gate_policies(profile, config.margin, config.floor, config.recall_tolerance, config.anomaly_floor),
            actor=f"champion_gate:{trigger(context)}:{context.run.run_id[:8]}", run_id=context.run.run_id,
            context={"trigger": trigger(context), "trigger_decision_id": started_by},
        )
        check = dg.AssetCheckResult(check_name=FLOOR_CHECK, passed=not gate.below_floor,
                                    metadata={"below_floor_or_missing": dg.MetadataValue.json(gate.below_floor)})
        return dg.MaterializeResult(metadata=gate.metadata, check_results=[check])

    return [champion_gate]
