"""The whole pipeline: one asset group per fleet profile, built by the same factory.

For every `profiles/<fleet>.yaml`:
    <fleet>/devices ──┐
    <fleet>/telemetry[day] ──► <fleet>/features[day] ──► online features (serving)
    <fleet>/events[day] ─────┘
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from iot_mlops.features.assets import features_assets
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake.resource import LakeResource
from iot_mlops.profiles import FleetProfile, load_profiles
from iot_mlops.settings import get_settings


def fleet_definitions(profile: FleetProfile, profile_dir: Path) -> dg.Definitions:
    """Every asset, check and job of one fleet."""
    assets = [*ingestion_assets(profile, profile_dir), *features_assets(profile, profile_dir)]
    daily = dg.define_asset_job(
        f"{profile.name}_daily",
        selection=dg.AssetSelection.groups(profile.name),
        description=f"Ingest and featurize {profile.name} for the selected days.",
    )
    return dg.Definitions(assets=assets, jobs=[daily])


def build_definitions() -> dg.Definitions:
    """Definitions of all fleets in the profiles folder, with resources from settings."""
    settings = get_settings()
    profile_dir = settings.profiles_dir.resolve()
    fleets = [fleet_definitions(p, profile_dir) for p in load_profiles(profile_dir).values()]
    resources = dg.Definitions(resources={"lake": LakeResource.from_settings()})
    return dg.Definitions.merge(*fleets, resources)


defs = build_definitions()
