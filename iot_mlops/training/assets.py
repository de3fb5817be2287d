"""Dagster assets of one fleet's training: labels[day], training_dataset, failure_model, anomaly_model."""

import math

import dagster as dg
import pandas as pd
from pydantic import Field

from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.reference import write_reference_profile
from iot_mlops.names import ACTOR_TAG, TRIGGER_TAG, model_name
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.profiles.schema_types import format_duration
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.settings import get_settings
from iot_mlops.training.dataset import build_dataset
from iot_mlops.training.fit import fit_anomaly_model, fit_failure_model
from iot_mlops.training.labels import compute_labels


class TrainingDatasetConfig(dg.Config):
    split: str = Field("time", description="'time' (shares from the profile) or 'reference' (the profile's fixed split).")
    window_days: int | None = Field(None, description="Use only the last N labelled days (default: all).")
    reason: str = Field("", description="Why this retraining runs: required when `<fleet>_retraining` is launched by hand.")


class FailureModelConfig(dg.Config):
    algorithm: str | None = Field(None, description="gradient_boosting, random_forest or logistic_regression (default: the profile's).")
    search_iterations: int = Field(3, description="Hyperparameter candidates tried (defaults first, then random draws).")
    search_folds: int = Field(3, description="Time-ordered folds; the last one is the validation part.")
    threshold_beta: float = Field(1.0, description="F-beta that picks each component's threshold (>1 favours recall) "
                                                   "when the profile sets no false-alarm budget.")


def failures_frame(lake: LakeResource, fleet: str) -> pd.DataFrame:
    events = lake.lake().scan(fleet, "events")
    with lake.connect() as con:
        return con.execute(f"SELECT device_id, ts, value AS component FROM {events} WHERE kind = 'failure'").df()


def trigger(context: dg.AssetExecutionContext) -> str:
    return context.run.tags.get(TRIGGER_TAG, "manual")


def log_manual_retraining(context: dg.AssetExecutionContext, registry: RegistryResource, reason: str, name: str) -> None:
    """A retraining launched by hand (not by a sensor) must say why; the reason goes to the decision log."""
    fleet = context.asset_key.path[0]
    if not reason.strip():
        raise dg.Failure(description=f"a manual retraining needs a reason: set `reason` in the config of {fleet}/training_dataset",
                         allow_retries=False)
    actor = context.run.tags.get(ACTOR_TAG) or f"dagster:{context.run.run_id[:8]}"
    registry.decision_log().record(fleet, "retrain_triggered", reason.strip(), actor,
                                   model_name=name, run_id=context.run.run_id, details={"sensor": "manual"})


def training_assets(ctx: FleetContext) -> list:
    """labels, training_dataset, failure_model and anomaly_model of one fleet."""
    profile, fleet, key = ctx.profile, ctx.fleet, ctx.key
    common = dict(group_name=fleet, owners=profile.owners)
    horizon_days = math.ceil(profile.target.horizon.total_seconds() / 86400)
    future = dg.TimeWindowPartitionMapping(start_offset=0, end_offset=horizon_days)

    @daily_asset(
        key=key("labels"), kinds={"duckdb", "parquet"}, partitions_def=ctx.partitions,
        description=(
            f"Per feature row: which component fails within {format_duration(profile.target.horizon)} ({', '.join(profile.components)}). "
            "Rows whose horizon reaches past the ingested events have NULL labels and label_complete = false; "
            "rows that saw a failed device before its repair have out_of_service = true and are left out of training."
        ),
        deps=[key("features"), dg.AssetDep(key("events"), partition_mapping=future)],
        check_specs=[dg.AssetCheckSpec("labels_complete", asset=key("labels"),
                                       description="Every row's horizon is covered by ingested events.")],
        **common,
    )
    def labels(context: dg.AssetExecutionContext, lake: LakeResource):
        with lake.connect() as con:
            report = compute_labels(con, lake.lake(), profile, partition_days(context))
        check = dg.AssetCheckResult(
            check_name="labels_complete", passed=report.incomplete_rows == 0, severity=dg.AssetCheckSeverity.WARN,
            metadata={"incomplete_rows": report.incomplete_rows, "events_from": str(report.events_from),
                      "events_until": str(report.events_until)},
        )
        return dg.MaterializeResult(metadata=report.metadata, check_results=[check])

    @dg.asset(
        key=key("training_dataset"), kinds={"polars", "duckdb", "parquet"}, deps=[key("labels"), key("features")],
        description="Point-in-time join of complete labels to features, split train/validation/test in time with horizon gaps.",
        **common,
    )
    def training_dataset(context: dg.AssetExecutionContext, config: TrainingDatasetConfig, lake: LakeResource,
                         registry: RegistryResource):
        if context.run.tags.get(TRIGGER_TAG) == "manual":  # the retraining job's own tag; sensors and replays set theirs
            log_manual_retraining(context, registry, config.reason, model_name(fleet, profile.target.prediction_type))
        report = build_dataset(lake.lake(), profile, config.split, config.window_days)
        with lake.connect() as con:
            reference = write_reference_profile(con, lake.lake(), profile, report)
        return dg.MaterializeResult(metadata={**report.metadata, **reference.metadata})

    @dg.asset(
        key=key("failure_model"), kinds={"scikitlearn", "mlflow"}, deps=[key("training_dataset"), key("events")],
        description=(
            f"One classifier per component (default {profile.training.algorithm}), class-weighted, hyperparameters and "
            "thresholds from time-ordered folds (within the profile's false-alarm budget, if any); logged to MLflow and "
            "registered with alias `challenger`."
        ),
        **common,
    )
    def failure_model(context: dg.AssetExecutionContext, config: FailureModelConfig, lake: LakeResource, registry: RegistryResource):
        run = fit_failure_model(
            lake.lake(), registry.registry(), profile, failures_frame(lake, fleet), algorithm=config.algorithm,
            search_iterations=config.search_iterations, search_folds=config.search_folds,
            threshold_beta=config.threshold_beta, trigger=trigger(context), ui_url=get_settings().mlflow_ui_url)
        return dg.MaterializeResult(metadata={**run.metadata, **{k: dg.MetadataValue.md(v) for k, v in run.markdown.items()}})

    @dg.asset(
        key=key("anomaly_model"), kinds={"scikitlearn", "mlflow"}, deps=[key("training_dataset"), key("events")],
        description="IsolationForest on healthy windows (far from any failure); registered with alias `challenger`.",
        **common,
    )
    def anomaly_model(context: dg.AssetExecutionContext, lake: LakeResource, registry: RegistryResource):
        run = fit_anomaly_model(lake.lake(), registry.registry(), profile, failures_frame(lake, fleet), trigger=trigger(context))
        return dg.MaterializeResult(metadata=run.metadata)

    return [labels, training_dataset, failure_model, anomaly_model]
