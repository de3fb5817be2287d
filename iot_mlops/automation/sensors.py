"""Retraining sensors of one fleet: drift, feedback, live performance and data quality."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import dagster as dg

from iot_mlops.automation.policy import Condition, drift_condition, feedback_condition, performance_condition, quality_condition
from iot_mlops.automation.retraining import evaluate, last_fired_day
from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.drift import drift_history, seasonal_drift_history
from iot_mlops.monitoring.performance import performance_history
from iot_mlops.monitoring.quality_store import quality_history
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.names import FLEET_TAG, model_name, op_name, retraining_job, sensor_name
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import FleetProfile
from iot_mlops.profiles.schema_types import format_duration
from iot_mlops.registry.mlflow_service import CHAMPION, ModelNotFound
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.settings import get_settings
from iot_mlops.training.dataset import DatasetError, load_dataset_report

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def running_retrainings(instance: dg.DagsterInstance, fleet: str) -> int:
    return instance.get_runs_count(dg.RunsFilter(job_name=retraining_job(fleet), statuses=IN_FLIGHT))


def sensor_result(context: dg.SensorEvaluationContext, profile: FleetProfile, condition: Condition,
                  lake: LakeResource, registry: RegistryResource) -> dg.RunRequest | dg.SkipReason:
    """Apply the retraining policy to a sensor's condition: a run request with a run_key, or the reason for none."""
    outcome = evaluate(condition, profile, lake.lake(), registry.decision_log(),
                       running=running_retrainings(context.instance, profile.name))
    if outcome.verdict.action != "trigger":
        return dg.SkipReason(outcome.verdict.reason)
    context.log.info(f"{profile.name}: retraining triggered: {outcome.verdict.reason}")
    return dg.RunRequest(run_key=outcome.verdict.run_key, tags={**outcome.tags, FLEET_TAG: profile.name},
                         run_config=search_config(profile.name))


def search_config(fleet: str) -> dict:
    """Run config of a sensor-started retraining: the search budget from settings, if set."""
    settings = get_settings()
    budget = {"search_iterations": settings.retraining_search_iterations, "search_folds": settings.retraining_search_folds}
    budget = {k: v for k, v in budget.items() if v is not None}
    return {"ops": {op_name(fleet, "failure_model"): {"config": budget}}} if budget else {}


def drift(profile: FleetProfile, lake: LakeResource, registry: RegistryResource, store: StoreResource) -> Condition:
    history = [(day, share) for day, share, _ in drift_history(lake.lake(), profile.name)]
    fired = last_fired_day(registry.decision_log(), profile.name, "drift_sensor")
    return drift_condition(history, profile.monitoring.retraining, date.fromisoformat(fired) if fired else None,
                           seasonal_drift_history(lake.lake(), profile.name))


def feedback(profile: FleetProfile, lake: LakeResource, registry: RegistryResource, store: StoreResource) -> Condition:
    """Feedback about predictions newer than the last training window: what the latest model has not learned from."""
    name = model_name(profile.name, profile.target.prediction_type)
    try:
        latest = registry.registry().versions(name)[-1]
        window_end = load_dataset_report(lake.lake(), profile.name).window[1]
    except (ModelNotFound, DatasetError) as missing:
        return Condition("feedback_sensor", False, f"nothing to judge yet: {missing}")
    stats = store.feedback().feedback_on_predictions_after(profile.name, window_end)
    return feedback_condition(stats.count, stats.false_positive_rate, profile.monitoring.retraining, latest.version)


def performance(profile: FleetProfile, lake: LakeResource, registry: RegistryResource, store: StoreResource) -> Condition:
    champion = registry.registry().alias_version(model_name(profile.name, profile.target.prediction_type), CHAMPION)
    history = [(day, figures) for day, figures in performance_history(lake.lake(), profile.name)
               if str(figures.get("model_version")) == str(champion)]
    if not history:
        return performance_condition(None, None, 0, profile.monitoring.retraining, champion)
    day, figures = history[-1]
    return performance_condition(day, figures.get("recall"), int(figures.get("failures") or 0),
                                 profile.monitoring.retraining, champion)


def quality(profile: FleetProfile, lake: LakeResource, registry: RegistryResource, store: StoreResource) -> Condition:
    return quality_condition(quality_history(lake.lake(), profile.name), profile.monitoring.retraining)


CONDITIONS: dict[str, tuple[Callable[..., Condition], str]] = {
    "drift_sensor": (drift, "drift share at or above the high threshold on K consecutive partitions (with hysteresis)"),
    "feedback_sensor": (feedback, "false-positive rate above the threshold with enough feedback since the last training"),
    "performance_sensor": (performance, "live recall of the champion over matured predictions below the floor"),
    "data_quality_sensor": (quality, "ERROR data-quality checks on consecutive days"),
}


def retraining_sensors(ctx: FleetContext) -> list[dg.SensorDefinition]:
    """One sensor per condition; each asks for `<fleet>_retraining` under the profile's retraining policy."""
    return [_sensor(ctx.profile, condition, condition_of, what) for condition, (condition_of, what) in CONDITIONS.items()]


def _sensor(profile: FleetProfile, condition: str, condition_of: Callable[..., Condition], what: str) -> dg.SensorDefinition:
    settings = get_settings()
    policy, interval = profile.monitoring.retraining, settings.sensor_interval_seconds
    running = profile.name in settings.sensors_running_fleets

    @dg.sensor(
        name=sensor_name(profile.name, condition), job_name=retraining_job(profile.name), minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description=(f"Retrain {profile.name} when {what}. Cooldown {format_duration(policy.cooldown)}, at most {policy.max_per_day} per day, "
                     f"at least {policy.min_new_days} new feature days; every decision goes to the decision log."),
    )
    def retraining_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, registry: RegistryResource,
                          store: StoreResource):
        return sensor_result(context, profile, condition_of(profile, lake, registry, store), lake, registry)

    return retraining_sensor
