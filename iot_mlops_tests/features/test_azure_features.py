"""Azure PdM end to end: one-run backfill, the recipe's features, and day-by-day == range runs."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from iot_mlops.features import get_device_features
from iot_mlops.lake import Lake
from iot_mlops.lake.resource import LakeResource
from iot_mlops_tests.fleet import RANGE_END, RANGE_START

FLEET = "azure_pdm"
SENSORS = ["volt", "rotate", "pressure", "vibration"]
COMPONENTS = ["comp1", "comp2", "comp3", "comp4"]


def key(table: str) -> dg.AssetKey:
    return dg.AssetKey([FLEET, table])


def features(lake_root: Path, days) -> pd.DataFrame:
    lake = Lake(lake_root)
    return pd.concat([pd.read_parquet(lake.partition_file(FLEET, "features", d)) for d in days], ignore_index=True)


def test_backfill_of_every_day_is_one_run(azure_backfill, azure_days, azure_dir):
    instance, result, lake_root = azure_backfill
    assert result.success
    assert len(instance.get_runs()) == 1
    for table in ("telemetry", "events", "features"):
        assert instance.get_materialized_partitions(key(table)) == set(azure_days)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    assert {c.asset_key for c in result.get_asset_check_evaluations()} == {key(t) for t in ("devices", "telemetry", "events", "features")}

    raw = pd.read_parquet(azure_dir / "telemetry.parquet")
    lake = Lake(lake_root)
    stored = pd.read_parquet(lake.files(FLEET, "telemetry"))
    assert len(stored) == len(raw)
    # One feature row per machine and 3 h step that has telemetry in the step before it.
    steps = raw.assign(t=raw["datetime"].dt.floor("3h") + pd.Timedelta(hours=3))[["machine_id", "t"]].drop_duplicates()
    assert len(features(lake_root, lake.partitions(FLEET, "features"))) == len(steps)


@pytest.mark.parametrize(
    "machine, at",
    [(1, datetime(2015, 1, 4, 0)), (1, datetime(2015, 1, 4, 9)), (17, datetime(2015, 3, 16, 6)), (17, datetime(2015, 3, 16, 9))],
)
def test_features_follow_the_recipe(azure_backfill, azure_dir, machine: int, at: datetime):
    frame = pd.read_parquet(Lake(azure_backfill[2]).partition_file(FLEET, "features", at.date()))
    row = frame[(frame["device_id"] == str(machine)) & (frame["ts"] == at)].iloc[0]

    telemetry = pd.read_parquet(azure_dir / "telemetry.parquet")
    telemetry = telemetry[telemetry["machine_id"] == machine]
    for hours in (3, 24):
        window = telemetry[(telemetry["datetime"] >= at - timedelta(hours=hours)) & (telemetry["datetime"] < at)]
        assert len(window) == hours
        for sensor in SENSORS:
            assert row[f"{sensor}_mean_{hours}h"] == pytest.approx(window[sensor].mean(), abs=1e-6)
            assert row[f"{sensor}_std_{hours}h"] == pytest.approx(window[sensor].std(ddof=1), abs=1e-6)

    errors = pd.read_parquet(azure_dir / "errors.parquet")
    errors = errors[(errors["machine_id"] == machine) & (errors["datetime"] >= at - timedelta(hours=24)) & (errors["datetime"] < at)]
    for code in [f"error{i}" for i in range(1, 6)]:
        assert row[f"errors_{code}_24h"] == (errors["error_id"] == code).sum()

    maint = pd.read_parquet(azure_dir / "maint.parquet")
    maint = maint[(maint["machine_id"] == machine) & (maint["datetime"] < at)]
    for comp in COMPONENTS:
        last = maint[maint["comp"] == comp]["datetime"].max()
        assert row[f"hours_since_maint_{comp}"] == pytest.approx((at - last) / timedelta(hours=1))

    machines = pd.read_parquet(azure_dir / "machines.parquet").set_index("machine_id")
    assert (row["model"], row["age"]) == (machines.loc[machine, "model"], machines.loc[machine, "age"])


def test_error_counts_are_not_all_zero_at_the_checked_times(azure_backfill):
    frame = features(azure_backfill[2], [datetime(2015, 1, 4).date(), datetime(2015, 3, 16).date()])
    errors = frame[[c for c in frame.columns if c.startswith("errors_")]]
    assert errors.to_numpy().sum() > 0


def test_day_by_day_equals_one_range_run(azure_backfill, azure_lake, azure_assets, azure_days, azure_dir, tmp_path: Path):
    days = azure_days[25:35]  # crosses a month boundary
    ranged = tmp_path / "ranged"
    shutil.copytree(azure_lake, ranged)

    def run(lake_root: Path, **kwargs):
        resources = {"lake": LakeResource(root=str(lake_root), landing_root=str(tmp_path / "landing"))}
        result = dg.materialize(azure_assets, selection=[key("features")], resources=resources, raise_on_error=False, **kwargs)
        assert result.success

    for day in days:
        run(azure_lake, partition_key=day)
    run(ranged, tags={RANGE_START: days[0], RANGE_END: days[-1]})

    dates = [datetime.fromisoformat(d).date() for d in days]
    one_by_one, in_range, backfill = (features(root, dates) for root in (azure_lake, ranged, azure_backfill[2]))
    machines = pd.read_parquet(azure_dir / "telemetry.parquet", columns=["machine_id"])["machine_id"].nunique()
    assert len(one_by_one) == machines * 8 * len(days)
    for other in (in_range, backfill):
        pd.testing.assert_frame_equal(one_by_one, other, check_exact=False, rtol=0, atol=1e-9)
    floats = one_by_one.select_dtypes("float").to_numpy()
    assert np.isfinite(floats).mean() > 0.9, "features should mostly be filled in"

    newest = one_by_one[one_by_one["device_id"] == "5"]["ts"].max()
    assert get_device_features(FLEET, "5", azure_lake)["ts"] == newest
