"""The jobs of one fleet: daily partitions, labels, (re)training."""

from __future__ import annotations

import dagster as dg

from iot_mlops.automation.retraining import retraining_job_name
from iot_mlops.profiles import FleetProfile
from iot_mlops.training.assets import TRIGGER_TAG

DAILY = ("devices", "telemetry", "events", "features", "labels", "predictions", "drift_report", "data_quality",
         "feedback_summary", "model_performance")
NIGHTLY = tuple(name for name in DAILY if name != "labels")  # labels wait until their horizon has matured
TRAINING = ("training_dataset", "failure_model", "anomaly_model", "champion_gate")
RETRAINING = ("training_dataset", "failure_model", "champion_gate")


def asset_keys(profile: FleetProfile, names: tuple[str, ...]) -> list[dg.AssetKey]:
    return [dg.AssetKey([profile.name, name]) for name in names]


def fleet_jobs(profile: FleetProfile) -> list[dg.UnresolvedAssetJobDefinition]:
    """`<fleet>_daily`, `<fleet>_training` (first models) and `<fleet>_retraining` (what sensors start)."""
    fleet = profile.name
    select = lambda names: dg.AssetSelection.assets(*asset_keys(profile, names))  # noqa: E731
    return [
        dg.define_asset_job(
            f"{fleet}_daily", selection=select(DAILY),
            description=f"Ingest, featurize, label, score and monitor {fleet} for the selected days.",
        ),
        dg.define_asset_job(
            f"{fleet}_training", selection=select(TRAINING),
            description=f"Build the training dataset, train the failure and anomaly models, and gate them ({fleet}).",
        ),
        dg.define_asset_job(
            retraining_job_name(fleet), selection=select(RETRAINING),
            # Its steps run one after another: a process per step would only add a code load (about 5 s) to each.
            executor_def=dg.in_process_executor,
            run_tags={TRIGGER_TAG: "manual"},  # a sensor's run request names its own trigger instead
            description=(f"Retrain {fleet}'s failure model on current data and gate it. Sensors start it with their reason; "
                         f"by hand, set `reason` in the config of {fleet}/training_dataset (or `iot-mlops retrain`)."),
        ),
    ]
