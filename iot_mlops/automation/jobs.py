"""The jobs of one fleet: daily partitions, labels, (re)training."""

from __future__ import annotations

import dagster as dg

from iot_mlops.names import DAILY, RETRAINING, TRAINING, TRIGGER_TAG, daily_job, retraining_job, training_job
from iot_mlops.partitions import FleetContext


def fleet_jobs(ctx: FleetContext) -> list[dg.UnresolvedAssetJobDefinition]:
    """`<fleet>_daily`, `<fleet>_training` (first models) and `<fleet>_retraining` (what sensors start)."""
    fleet = ctx.fleet
    select = lambda names: dg.AssetSelection.assets(*ctx.keys(names))  # noqa: E731
    return [
        dg.define_asset_job(
            daily_job(fleet), selection=select(DAILY),
            description=f"Ingest, featurize, label, score and monitor {fleet} for the selected days.",
        ),
        dg.define_asset_job(
            training_job(fleet), selection=select(TRAINING),
            description=f"Build the training dataset, train the failure and anomaly models, and gate them ({fleet}).",
        ),
        dg.define_asset_job(
            retraining_job(fleet), selection=select(RETRAINING),
            # Its steps run one after another: a process per step would only add a code load (about 5 s) to each.
            executor_def=dg.in_process_executor,
            run_tags={TRIGGER_TAG: "manual"},  # a sensor's run request names its own trigger instead
            description=(f"Retrain {fleet}'s failure model on current data and gate it. Sensors start it with their reason; "
                         f"by hand, set `reason` in the config of {fleet}/training_dataset (or `iot-mlops retrain`)."),
        ),
    ]
