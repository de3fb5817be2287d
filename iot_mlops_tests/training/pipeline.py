"""The whole pipeline (ingestion to predictions) of a fleet in tests, and trained Azure PdM state shared per session.

Training on Azure PdM costs tens of seconds here, so the labelled lake and the first trained and gated models
are built once per session (cached in this module) and tests work on copies: the MLflow and operational
SQLite files are copied per test, the artifacts folder is shared and only ever added to.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

from iot_mlops.features.assets import features_assets
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake import Lake, connect
from iot_mlops.lake.resource import LakeResource
from iot_mlops.names import model_name
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.partitions import FleetContext
from iot_mlops.predictions.assets import prediction_assets
from iot_mlops.profiles import FleetProfile
from iot_mlops.registry.assets import gate_assets
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.training.assets import training_assets
from iot_mlops_tests.fleet import PROFILES, RANGE_END, RANGE_START

AZURE = "azure_pdm"
TRAINING = ("training_dataset", "failure_model", "anomaly_model", "champion_gate")


def all_assets(profile: FleetProfile, profile_dir: Path) -> list[dg.AssetsDefinition]:
    """Every asset of one fleet, as definitions.py wires them."""
    ctx = FleetContext.of(profile, profile_dir)
    return [*ingestion_assets(ctx), *features_assets(ctx), *training_assets(ctx), *gate_assets(ctx), *prediction_assets(ctx)]


def registry_resource(folder: Path, artifacts: Path | None = None) -> RegistryResource:
    """MLflow (SQLite) and the operational store in `folder`; artifacts there too unless shared."""
    folder.mkdir(parents=True, exist_ok=True)
    return RegistryResource(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", artifacts_dir=str(artifacts or folder / "artifacts"),
                            store_url=f"sqlite:///{folder / 'operational.db'}")


def copy_registry(resource: RegistryResource, folder: Path) -> RegistryResource:
    """A private copy of a registry's MLflow and operational databases; the artifacts folder stays shared."""
    folder.mkdir(parents=True, exist_ok=True)
    for uri, name in ((resource.tracking_uri, "mlflow.db"), (resource.store_url, "operational.db")):
        source = Path(uri.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):  # the store runs in WAL mode: recent commits live in the -wal file
            if source.with_name(source.name + suffix).is_file():
                shutil.copy(source.with_name(source.name + suffix), folder / (name + suffix))
    return registry_resource(folder, Path(resource.artifacts_dir))


def run(assets, lake: LakeResource, registry: RegistryResource, *tables: str, fleet: str, days: tuple[date, date] | None = None,
        day: date | None = None, config: dict | None = None, instance: dg.DagsterInstance | None = None,
        tags: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialize some tables of a fleet (for one day, a day range, or unpartitioned) without raising."""
    range_tags = {RANGE_START: days[0].isoformat(), RANGE_END: days[1].isoformat()} if days else {}
    return dg.materialize(
        assets,
        selection=[dg.AssetKey([fleet, t]) for t in tables],
        partition_key=day.isoformat() if day else None,
        tags={**range_tags, **(tags or {})} or None,
        resources={"lake": lake, "registry": registry},
        run_config=dg.RunConfig(ops={f"{fleet}__{table}": c for table, c in (config or {}).items()}) if config else None,
        instance=instance,
        raise_on_error=False,
    )


def failures(lake_root: Path, fleet: str) -> pd.DataFrame:
    """Failure events as the training code reads them: device_id, ts, component."""
    with connect() as con:
        return con.execute(
            f"SELECT device_id, ts, value AS component FROM {Lake(lake_root).scan(fleet, 'events')} WHERE kind = 'failure'"
        ).df()


def step_error(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the (only) failed step of a run: Dagster's wrapper and the errors that caused it."""
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error, messages = failure.step_failure_data.error, []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


@dataclass(frozen=True)
class AzureLabelled:
    """The backfilled Azure PdM lake with labels for every day, and the run that labelled it."""

    lake_root: Path
    days: list[date]
    labels_run: dg.ExecuteInProcessResult

    def copy_lake(self, target: Path, tables: tuple[str, ...] = ("devices", "telemetry", "events", "features", "labels")) -> Path:
        for table in tables:
            shutil.copytree(self.lake_root / AZURE / table, target / AZURE / table)
        return target


@dataclass(frozen=True)
class AzureTrained:
    """Azure PdM after one `training_dataset -> failure_model + anomaly_model -> champion_gate` run (defaults)."""

    profile: FleetProfile
    assets: list
    lake: LakeResource
    registry: RegistryResource
    first_run: dg.ExecuteInProcessResult

    @property
    def lake_root(self) -> Path:
        return Path(self.lake.root)

    @property
    def failure_name(self) -> str:
        return model_name(self.profile.name, self.profile.target.prediction_type)

    @property
    def anomaly_name(self) -> str:
        return model_name(self.profile.name, "anomaly")

    def test_rows(self) -> pd.DataFrame:
        frame = pd.read_parquet(Lake(self.lake_root).table_file(AZURE, "training_dataset"))
        return frame[frame["split"] == "test"]


_SESSION: dict[str, object] = {}


def azure_labelled(tmp_path_factory, backfilled_lake: Path, profile: FleetProfile) -> AzureLabelled:
    """Labels for every Azure day, materialized in one range run on a copy of the backfilled lake (once per session)."""
    if "labelled" not in _SESSION:
        root = tmp_path_factory.mktemp("azure_labelled") / "lake"
        for table in ("devices", "telemetry", "events", "features"):
            shutil.copytree(backfilled_lake / AZURE / table, root / AZURE / table)
        days = Lake(root).partitions(AZURE, "features")
        lake = LakeResource(root=str(root), landing_root=str(root.parent / "landing"))
        result = run(all_assets(profile, PROFILES), lake, registry_resource(root.parent / "unused"), "labels", fleet=AZURE,
                     days=(days[0], days[-1]))
        assert result.success, "labelling the Azure PdM lake failed"
        _SESSION["labelled"] = AzureLabelled(root, days, result)
    return _SESSION["labelled"]  # type: ignore[return-value]


def azure_trained(tmp_path_factory, labelled: AzureLabelled, profile: FleetProfile) -> AzureTrained:
    """The first training and gate run on Azure PdM with every default config (once per session)."""
    if "trained" not in _SESSION:
        root = tmp_path_factory.mktemp("azure_trained")
        lake_root = labelled.copy_lake(root / "lake")
        lake = LakeResource(root=str(lake_root), landing_root=str(root / "landing"))
        registry = registry_resource(root / "registry")
        assets = all_assets(profile, PROFILES)
        result = run(assets, lake, registry, *TRAINING, fleet=AZURE)
        assert result.success, "the first Azure PdM training run failed"
        _SESSION["trained"] = AzureTrained(profile, assets, lake, registry, result)
    return _SESSION["trained"]  # type: ignore[return-value]


def open_registry(resource: RegistryResource) -> tuple[ModelRegistry, DecisionLog]:
    return resource.registry(), resource.decision_log()
