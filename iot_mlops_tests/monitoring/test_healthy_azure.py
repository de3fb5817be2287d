"""The Azure PdM slice with its shipped profile: no day starts a retraining from drift or data quality."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from iot_mlops.automation.policy import drift_condition, quality_condition
from iot_mlops.lake import Lake
from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.drift import drift_history, seasonal_drift_history
from iot_mlops.monitoring.drift_assets import drift_assets
from iot_mlops.monitoring.quality import TABLE as QUALITY
from iot_mlops.monitoring.quality_assets import quality_assets
from iot_mlops.monitoring.quality_store import quality_history
from iot_mlops.partitions import FleetContext
from iot_mlops_tests.fleet import PROFILES
from iot_mlops_tests.training.pipeline import AZURE, AzureLabelled, all_assets, registry_resource, run


def test_the_azure_slice_starts_no_retraining_from_drift_or_data_quality(azure_labelled: AzureLabelled, azure_profile,
                                                                         tmp_path: Path):
    lake_root = azure_labelled.copy_lake(tmp_path / "lake")
    lake_resource = LakeResource(root=str(lake_root), landing_root=str(tmp_path / "landing"))
    registry = registry_resource(tmp_path / "registry")
    assets = [*all_assets(azure_profile, PROFILES), *quality_assets(FleetContext.of(azure_profile, PROFILES)), *drift_assets(FleetContext.of(azure_profile, PROFILES))]
    days = azure_labelled.days
    assert run(assets, lake_resource, registry, "training_dataset", fleet=AZURE).success
    assert run(assets, lake_resource, registry, QUALITY, "drift_report", fleet=AZURE, days=(days[0], days[-1]),
               config={"drift_report": {"config": {"evidently": False}}}, instance=dg.DagsterInstance.ephemeral()).success
    lake = Lake(lake_root)
    shares = [(day, share) for day, share, _ in drift_history(lake, AZURE)]
    quality = quality_history(lake, AZURE)
    assert [d for d, _ in shares] == [d for d, _ in quality] == days
    policy, seasonal, fired = azure_profile.monitoring.retraining, seasonal_drift_history(lake, AZURE), []
    for i in range(1, len(days) + 1):
        if drift_condition(shares[:i], policy, None, seasonal).fired:
            fired.append(f"drift on {shares[i - 1][0]}")
        if quality_condition(quality[:i], policy).fired:
            fired.append(f"quality on {quality[i - 1][0]}")
    print("azure drift", [(str(d), round(s, 3)) for d, s in shares])
    print("azure quality", [(str(d), s) for d, s in quality])
    assert fired == [], (shares, quality)
