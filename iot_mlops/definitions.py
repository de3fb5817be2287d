"""The whole pipeline: one asset group per fleet profile, built by the same factory.

For every `profiles/<fleet>.yaml`:
    <fleet>/devices ──┐
    <fleet>/telemetry[day] ──► <fleet>/features[day] ──► <fleet>/labels[day] ──► <fleet>/training_dataset
    <fleet>/events[day] ─────┘        │    │                                         │  (+ reference profile)
          │                           │    └──► <fleet>/drift_report[day]            ▼
          └──► <fleet>/data_quality[day]        <fleet>/failure_model, <fleet>/anomaly_model ──► <fleet>/champion_gate
                                      └──────────────► <fleet>/predictions[day] ◄── champion ──┘
    feedback (operational store) ──► <fleet>/feedback_summary[day]
    predictions + events ──► <fleet>/model_performance[day]   (matured labels only)

    <fleet>_nightly schedule: yesterday's partitions, then the retraining sensors decide:
    <fleet>_drift_sensor, _feedback_sensor, _performance_sensor, _data_quality_sensor ──► <fleet>_retraining
"""


import dagster as dg

from iot_mlops.automation.jobs import fleet_jobs
from iot_mlops.automation.schedules import nightly_schedule
from iot_mlops.automation.sensors import retraining_sensors
from iot_mlops.features.assets import features_assets
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.drift_assets import drift_assets
from iot_mlops.monitoring.feedback_assets import monitoring_assets
from iot_mlops.monitoring.quality_assets import quality_assets
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.partitions import FleetContext
from iot_mlops.predictions.assets import prediction_assets
from iot_mlops.profiles import load_profiles
from iot_mlops.registry.assets import gate_assets
from iot_mlops.registry.jobs import rollback_model
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.settings import CelerySettings, get_settings
from iot_mlops.training.assets import training_assets

ASSET_FACTORIES = (ingestion_assets, quality_assets, features_assets, training_assets, gate_assets, prediction_assets,
                   drift_assets, monitoring_assets)


def fleet_definitions(ctx: FleetContext) -> dg.Definitions:
    """Assets, jobs, the nightly schedule and the retraining sensors of one fleet, all from the same context."""
    return dg.Definitions(
        assets=[asset for factory in ASSET_FACTORIES for asset in factory(ctx)],
        jobs=fleet_jobs(ctx),
        schedules=[nightly_schedule(ctx)],
        sensors=retraining_sensors(ctx),
    )


def resources() -> dict:
    """Lake, MLflow registry and the operational store; URLs that may hold a password reach them as dg.EnvVar."""
    return {"lake": LakeResource.from_settings(), "registry": RegistryResource.from_settings(), "store": StoreResource.from_settings()}


def executor() -> dg.ExecutorDefinition | None:
    """With IOT_MLOPS_EXECUTOR=celery, dagster-celery's executor (steps on the workers); else Dagster's default."""
    if get_settings().executor != "celery":
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(CelerySettings().executor_config(), name="iot_mlops_celery")


def build_definitions() -> dg.Definitions:
    """Definitions of all fleets in the profiles folder, with resources and executor from settings."""
    profile_dir = get_settings().profiles_dir.resolve()
    fleets = [fleet_definitions(FleetContext.of(p, profile_dir)) for p in load_profiles(profile_dir).values()]
    return dg.Definitions.merge(*fleets, dg.Definitions(jobs=[rollback_model], resources=resources(), executor=executor()))


defs = build_definitions()
