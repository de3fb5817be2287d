"""The whole pipeline: one asset group per fleet profile, built by the same factory.

For every `profiles/<fleet>.yaml`:
    <fleet>/devices ──┐
    <fleet>/telemetry[day] ──► <fleet>/features[day] ──► <fleet>/labels[day] ──► <fleet>/training_dataset
    <fleet>/events[day] ─────┘        │                                              │
                                      │                        <fleet>/failure_model ┤ <fleet>/anomaly_model
                                      │                                              ▼
                                      └──────────────► <fleet>/predictions[day] ◄── <fleet>/champion_gate
"""

import warnings
from pathlib import Path

import dagster as dg

from iot_mlops.features.assets import features_assets
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake.resource import LakeResource
from iot_mlops.predictions.assets import prediction_assets
from iot_mlops.profiles import FleetProfile, load_profiles
from iot_mlops.registry.assets import gate_assets
from iot_mlops.registry.jobs import rollback_model
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.settings import get_settings
from iot_mlops.training.assets import training_assets

warnings.filterwarnings("ignore", category=dg.BetaWarning)

DAILY = ("devices", "telemetry", "events", "features", "labels", "predictions")
TRAINING = ("training_dataset", "failure_model", "anomaly_model", "champion_gate")


def fleet_definitions(profile: FleetProfile, profile_dir: Path) -> dg.Definitions:
    """Every asset, check and job of one fleet."""
    assets = [
        *ingestion_assets(profile, profile_dir),
        *features_assets(profile, profile_dir),
        *training_assets(profile, profile_dir),
        *gate_assets(profile, profile_dir),
        *prediction_assets(profile, profile_dir),
    ]
    keys = lambda names: dg.AssetSelection.assets(*(dg.AssetKey([profile.name, n]) for n in names))  # noqa: E731
    daily = dg.define_asset_job(
        f"{profile.name}_daily", selection=keys(DAILY),
        description=f"Ingest, featurize, label and score {profile.name} for the selected days.",
    )
    training = dg.define_asset_job(
        f"{profile.name}_training", selection=keys(TRAINING),
        description=f"Build the training dataset, train and register models, and run the champion gate for {profile.name}.",
    )
    return dg.Definitions(assets=assets, jobs=[daily, training])


def build_definitions() -> dg.Definitions:
    """Definitions of all fleets in the profiles folder, with resources from settings."""
    settings = get_settings()
    profile_dir = settings.profiles_dir.resolve()
    fleets = [fleet_definitions(p, profile_dir) for p in load_profiles(profile_dir).values()]
    shared = dg.Definitions(
        jobs=[rollback_model],
        resources={"lake": LakeResource.from_settings(), "registry": RegistryResource.from_settings()},
    )
    return dg.Definitions.merge(*fleets, shared)


defs = build_definitions()
