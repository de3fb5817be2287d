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

from pathlib import Path

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
from iot_mlops.partitions import daily_partitions, resolve_start
from iot_mlops.predictions.assets import prediction_assets
from iot_mlops.profiles import FleetProfile, load_profiles
from iot_mlops.registry.assets import gate_assets
from iot_mlops.registry.jobs import rollback_model
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.scaling import distributed_jobs
from iot_mlops.settings import get_settings
from iot_mlops.training.assets import training_assets



def fleet_assets(profile: FleetProfile, profile_dir: Path) -> list:
    """Every asset (and asset check) of one fleet."""
    return [
        *ingestion_assets(profile, profile_dir),
        *quality_assets(profile, profile_dir),
        *features_assets(profile, profile_dir),
        *training_assets(profile, profile_dir),
        *gate_assets(profile, profile_dir),
        *prediction_assets(profile, profile_dir),
        *drift_assets(profile, profile_dir),
        *monitoring_assets(profile, profile_dir),
    ]


def fleet_definitions(profile: FleetProfile, profile_dir: Path) -> dg.Definitions:
    """Assets, jobs, the nightly schedule and the retraining sensors of one fleet."""
    profile = resolve_start(profile, profile_dir)
    return dg.Definitions(
        assets=fleet_assets(profile, profile_dir),
        jobs=[*fleet_jobs(profile), *distributed_jobs(profile)],
        schedules=[nightly_schedule(profile, daily_partitions(profile, profile_dir))],
        sensors=retraining_sensors(profile),
    )


def resources() -> dict:
    """Lake, MLflow registry and the operational store; URLs that may hold a password reach them as dg.EnvVar."""
    return {"lake": LakeResource.from_settings(), "registry": RegistryResource.from_settings(), "store": StoreResource.from_settings()}


def build_definitions() -> dg.Definitions:
    """Definitions of all fleets in the profiles folder, with resources from settings."""
    profile_dir = get_settings().profiles_dir.resolve()
    fleets = [fleet_definitions(p, profile_dir) for p in load_profiles(profile_dir).values()]
    return dg.Definitions.merge(*fleets, dg.Definitions(jobs=[rollback_model], resources=resources()))


defs = build_definitions()
