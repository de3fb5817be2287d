"""Dagster asset of one fleet's batch predictions[day], scored by the current champion."""

import dagster as dg
import pandas as pd

from iot_mlops.lake import atomic_write
from iot_mlops.lake.resource import LakeResource
from iot_mlops.names import model_name
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.predictions.batch import score
from iot_mlops.registry.mlflow_service import CHAMPION, ModelNotFound
from iot_mlops.registry.resource import RegistryResource


def prediction_assets(ctx: FleetContext) -> list:
    profile, fleet = ctx.profile, ctx.fleet

    @daily_asset(
        key=ctx.key("predictions"), group_name=fleet, owners=profile.owners, kinds={"scikitlearn", "parquet"},
        partitions_def=ctx.partitions,
        deps=ctx.keys(("features", "champion_gate")),
        description=(
            "The champion scores the day's feature rows: probability and alert per component, predicted component, "
            "anomaly score, model name and version, and a stable prediction id. The lake file is the source of truth; "
            "its rows are also registered in the operational store so feedback can refer to them."
        ),
    )
    def predictions(context: dg.AssetExecutionContext, lake: LakeResource, registry: RegistryResource):
        store, days = registry.registry(), partition_days(context)
        name = model_name(fleet, profile.target.prediction_type)
        version = store.alias_version(name, CHAMPION)
        if version is None:
            raise ModelNotFound(f"{name} has no champion yet: materialize {fleet}/failure_model and {fleet}/champion_gate first")
        model = store.load_model(name, CHAMPION)
        anomaly_name = model_name(fleet, "anomaly")
        anomaly_version = store.alias_version(anomaly_name, CHAMPION)
        anomaly = store.load_model(anomaly_name, CHAMPION) if anomaly_version else None
        # The registry resource carries the operational store URL (Settings.store), shared with the `store` resource.
        log = PredictionLog(registry.resolved_store_url())
        rows, alerts, registered = {}, 0, 0
        for day in days:
            file = lake.lake().partition_file(fleet, "features", day)
            if not file.is_file():
                raise FileNotFoundError(f"{fleet}: no features for {day}; materialize {fleet}/features first")
            scored = score(fleet, pd.read_parquet(file), profile.components, model, name, version, anomaly, anomaly_version)
            target = lake.lake().partition_file(fleet, "predictions", day)
            atomic_write(target, lambda tmp: scored.to_parquet(tmp, index=False))
            registered += log.record_batch(fleet, scored)
            rows[str(day)] = len(scored)
            alerts += int((scored["predicted_component"] != "none").sum())
        return dg.MaterializeResult(metadata={
            "model": name, "model_version": version, "anomaly_model_version": anomaly_version or "none",
            "rows_per_day": dg.MetadataValue.json(rows), "alerts": alerts,
            "registered_in_store": registered,
            "lake_path": dg.MetadataValue.path(str(lake.lake().table_dir(fleet, "predictions"))),
        })

    return [predictions]
