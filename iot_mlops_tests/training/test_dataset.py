"""Training datasets: point-in-time joins, time splits with horizon gaps, fingerprints, no leakage."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from iot_mlops.lake import Lake, connect
from iot_mlops.lake.resource import LakeResource
from iot_mlops.training.assets import TrainingDatasetConfig
from iot_mlops.training.dataset import DatasetError, build_dataset, fingerprint, load_dataset_report
from iot_mlops_tests.fleet import DAYS, PROFILES, Fleet, clean_day, materializations, stamp
from iot_mlops_tests.training.pipeline import AZURE, AzureLabelled, all_assets, registry_resource, run
from iot_mlops_tests.training.tiny import ALL_DAYS, HORIZON, INGEST, TinyPipeline

SPLIT_ORDER = ["train", "validation", "test"]
LABELS = ["fails_impeller", "fails_seal"]


def key_set(frame: pd.DataFrame) -> set[tuple[str, pd.Timestamp]]:
    return set(zip(frame["device_id"], frame["ts"]))


def test_time_split_leaves_gaps_of_at_least_the_horizon(tiny: TinyPipeline):
    tiny.fleet.write_events(DAYS[1], "failure", [("d1", stamp(DAYS[1], 10), "seal")])
    assert tiny.run(*INGEST, days=ALL_DAYS).success
    assert tiny.run("labels", days=ALL_DAYS).success
    result = tiny.run("training_dataset")
    assert result.success

    dataset = tiny.read("training_dataset")
    labels = tiny.read("labels", DAYS)
    report = load_dataset_report(tiny.fleet.lake, tiny.name)
    b = report.boundaries
    assert b.name == "time"
    assert sorted(dataset["split"].unique()) == sorted(SPLIT_ORDER)
    by_split = {name: dataset[dataset["split"] == name]["ts"] for name in SPLIT_ORDER}
    for earlier, later in zip(SPLIT_ORDER, SPLIT_ORDER[1:]):
        assert by_split[later].min() - by_split[earlier].max() >= HORIZON, (earlier, later)
    assert (by_split["train"] < b.train_end).all()
    assert by_split["validation"].between(b.val_start, b.val_end, inclusive="left").all()
    assert (by_split["test"] >= b.test_start).all()
    assert b.val_start - b.train_end >= HORIZON and b.test_start - b.val_end >= HORIZON

    # Only complete, in-service labels, and all of them except those that fall in a gap.
    assert dataset[LABELS].notna().all().all()
    out = labels[labels["out_of_service"]]
    assert key_set(out) == {("d1", pd.Timestamp(stamp(DAYS[1], 11)))}  # the row that saw the 10:00 failure
    assert not key_set(out) & key_set(dataset)
    complete = labels[labels["label_complete"] & ~labels["out_of_service"]]
    in_gap = ((complete["ts"] >= b.train_end) & (complete["ts"] < b.val_start)) | (
        (complete["ts"] >= b.val_end) & (complete["ts"] < b.test_start))
    assert key_set(dataset) == key_set(complete[~in_gap])
    assert dataset["fails_seal"].sum() == complete.loc[~in_gap, "fails_seal"].sum() > 0

    meta = materializations(result)[("training_dataset", None)]
    assert meta["rows_by_split"] == dataset["split"].value_counts().to_dict() == report.rows
    assert meta["fingerprint"] == report.fingerprint == fingerprint(report.path)
    assert meta["split"] == "time"


def test_point_in_time_join_takes_the_newest_features_within_max_age(tiny: TinyPipeline):
    profile = tiny.fleet.profile()
    max_age = profile.features.max_age
    tiny.build()
    # Telemetry of d1 from 10:00 to 14:00 on day 2 turns out to be bad and is dropped; features are rebuilt
    # but labels are not: label rows at 11:00..15:00 now have no feature row at their own time.
    dropped = [stamp(DAYS[1], h) for h in range(10, 15)]
    rows = [r for r in clean_day(DAYS[1]) if not (r["device"] == "d1" and pd.Timestamp(r["time"]) in dropped)]
    tiny.fleet.write("telemetry", rows, DAYS[1])
    assert tiny.run("telemetry", "features", day=DAYS[1]).success
    assert tiny.run("training_dataset").success

    dataset = tiny.read("training_dataset")
    features = tiny.read("features", DAYS)
    assert (dataset["feature_ts"] <= dataset["ts"]).all()
    assert (dataset["ts"] - dataset["feature_ts"] <= max_age).all()

    # Independently: each label row's newest feature row at or before it, kept only within max_age.
    labels = tiny.read("labels", DAYS)
    labels = labels[labels["label_complete"] & labels["ts"].isin(dataset["ts"])]
    newest = pd.merge_asof(labels.sort_values("ts"), features[["device_id", "ts"]].assign(newest=features["ts"]).sort_values("ts"),
                           on="ts", by="device_id", direction="backward")
    newest = newest[newest["ts"] - newest["newest"] <= max_age]
    joined = dataset.set_index(["device_id", "ts"])["feature_ts"]
    assert key_set(dataset) == key_set(newest)
    assert all(joined[(d, t)] == n for d, t, n in zip(newest["device_id"], newest["ts"], newest["newest"]))

    # By construction: the last d1 feature row before the hole is 10:00 (built from 09:00).
    d1 = dataset[dataset["device_id"] == "d1"].set_index("ts")
    at = lambda h: pd.Timestamp(stamp(DAYS[1], h))  # noqa: E731
    assert d1.loc[at(11), "feature_ts"] == d1.loc[at(12), "feature_ts"] == at(10)  # 1 h and 2 h old: joined
    assert not {at(13), at(14), at(15)} & set(d1.index)  # 3 h or more: older than max_age, not joined
    assert d1.loc[at(16), "feature_ts"] == at(16)
    source = features[(features["device_id"] == "d1") & (features["ts"] == at(10))].iloc[0]
    for column in ("temp_mean_3h", "pressure_max_1h", "age"):
        assert d1.loc[at(12), column] == source[column]


def test_fingerprint_follows_content_and_future_telemetry_does_not_leak(tiny: TinyPipeline, tmp_path: Path):
    tiny.fleet.write_events(DAYS[1], "failure", [("d2", stamp(DAYS[1], 13), "impeller")])
    tiny.build()
    before = tiny.read("training_dataset")
    first = load_dataset_report(tiny.fleet.lake, tiny.name)

    # Equal inputs, equal fingerprint: rebuilt in place, and built from scratch in another lake.
    assert tiny.run("training_dataset").success
    assert load_dataset_report(tiny.fleet.lake, tiny.name).fingerprint == first.fingerprint
    other = TinyPipeline(Fleet(tiny.fleet.root, tmp_path / "lake2", tmp_path / "landing2"), tmp_path / "registry2")
    other.build()
    assert load_dataset_report(other.fleet.lake, other.name).fingerprint == first.fingerprint

    # Telemetry from day 3 12:00 on changes for every device; rows labelled at or before it must not move.
    cut = stamp(DAYS[2], 12)
    for day in DAYS[2:]:
        rows = clean_day(day)
        for r in rows:
            if pd.Timestamp(r["time"]) >= pd.Timestamp(cut):
                r["temp"] += 25.0
        tiny.fleet.write("telemetry", rows, day)
    assert tiny.run("telemetry", "features", "labels", days=(DAYS[2], DAYS[3])).success
    assert tiny.run("training_dataset").success
    after = tiny.read("training_dataset")
    changed = load_dataset_report(tiny.fleet.lake, tiny.name)
    assert changed.fingerprint != first.fingerprint
    assert changed.boundaries == first.boundaries

    early_before = before[before["ts"] <= cut].reset_index(drop=True)
    early_after = after[after["ts"] <= cut].reset_index(drop=True)
    assert len(early_before) > 0
    pd.testing.assert_frame_equal(early_after, early_before)
    late = after[after["ts"] > cut].set_index(["device_id", "ts"])
    late_before = before[before["ts"] > cut].set_index(["device_id", "ts"])
    assert (late["temp_mean_3h"] != late_before.loc[late.index, "temp_mean_3h"]).any()  # the change did reach later rows


def test_a_window_too_short_for_the_split_is_refused(tiny: TinyPipeline):
    # One day of events: labels known from 01:00 to 18:00, 17 h, too short for two 6 h gaps and the three parts.
    assert tiny.run(*INGEST, day=DAYS[0]).success
    assert tiny.run("labels", day=DAYS[0]).success
    with pytest.raises(DatasetError, match="too short for a time split"):
        build_dataset(tiny.fleet.lake, tiny.fleet.profile(), "time")
    with pytest.raises(DatasetError, match="unknown split 'random'"):
        build_dataset(tiny.fleet.lake, tiny.fleet.profile(), "random")


def test_reference_split_on_azure_reproduces_the_readme_split(azure_labelled: AzureLabelled, azure_profile, tmp_path: Path):
    lake_root = azure_labelled.copy_lake(tmp_path / "lake", ("features", "labels"))
    lake = LakeResource(root=str(lake_root), landing_root=str(tmp_path / "landing"))
    result = run(all_assets(azure_profile, PROFILES), lake, registry_resource(tmp_path / "registry"), "training_dataset",
                 fleet=AZURE, config={"training_dataset": TrainingDatasetConfig(split="reference")})
    assert result.success
    dataset = pd.read_parquet(Lake(lake_root).table_file(AZURE, "training_dataset"))
    train_end, test_start = datetime(2015, 2, 28), datetime(2015, 3, 1)  # from the data set's README
    seen, test = dataset[dataset["split"] != "test"], dataset[dataset["split"] == "test"]
    assert (seen["ts"] < train_end).all() and (test["ts"] >= test_start).all()

    labels = pd.read_parquet(Lake(lake_root).files(AZURE, "labels"))
    assert labels["out_of_service"].sum() > 0 and not key_set(labels[labels["out_of_service"]]) & key_set(dataset)
    complete = labels[labels["label_complete"] & ~labels["out_of_service"]]
    # Every complete, in-service label from the test start on is tested, and the validation part runs up to train_end.
    assert key_set(test) == key_set(complete[complete["ts"] >= test_start])
    assert seen["ts"].max() == complete.loc[complete["ts"] < train_end, "ts"].max()
    report = load_dataset_report(Lake(lake_root), AZURE)
    assert (report.boundaries.name, report.boundaries.val_end, report.boundaries.test_start) == ("reference", train_end, test_start)
    assert all(report.positives["test"][c] > 0 for c in azure_profile.components)
    assert timedelta(0) < report.boundaries.val_start - report.boundaries.train_end


def test_labels_of_an_older_version_are_refused_not_silently_dropped(tiny: TinyPipeline):
    assert tiny.run(*INGEST, days=ALL_DAYS).success and tiny.run("labels", days=ALL_DAYS).success
    lake = tiny.fleet.lake
    old = lake.partition_file(tiny.name, "labels", DAYS[1])
    with connect() as con:
        # One day as an older version wrote it: no out_of_service column.
        frame = con.execute(f"SELECT * EXCLUDE (out_of_service) FROM read_parquet('{old}')").df()
    frame.to_parquet(old)
    with pytest.raises(DatasetError, match="re-materialize tiny/labels"):
        build_dataset(lake, tiny.fleet.profile())
    assert tiny.run("labels", days=ALL_DAYS).success
    assert sum(build_dataset(lake, tiny.fleet.profile()).rows.values()) > 0
