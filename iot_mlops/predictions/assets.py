"""Dagster asset of one fleet's batch predictions[day], scored by the current champion."""

import dagster as dg

from iot_mlops.lake.resource import LakeResource
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.partitions import FleetContext, daily_asset, partition_days
from iot_mlops.predictions.daily import predict_days
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
        # The registry resource carries the operational store URL (Settings.store), shared with the `store` resource.
        log = PredictionLog(registry.resolved_store_url())
        run = predict_days(lake.lake(), registry.registry(), log, profile, partition_days(context))
        return dg.MaterializeResult(metadata=run.metadata)

    return [predictions]
