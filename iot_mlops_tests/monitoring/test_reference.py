"""Reference profiles: exact counts per bin and category, a bounded deterministic sample, written beside the dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iot_mlops.lake import Lake, connect
from iot_mlops.monitoring.reference import (
    PROFILE_FILE,
    SAMPLE_FILE,
    ReferenceProfile,
    ReferenceProfileError,
    build_reference,
    load_reference_profile,
    load_reference_sample,
)
from iot_mlops.profiles.monitoring import DriftSpec
from iot_mlops.training.dataset import load_dataset_report
from iot_mlops.training.evaluate import feature_columns
from iot_mlops_tests.fleet import Fleet, materializations
from iot_mlops_tests.training.tiny import HORIZON, TinyPipeline

N = 3000
KINDS = {"x": "numeric", "k": "numeric", "c": "numeric", "n": "numeric", "cat": "categorical"}


def reference_frame(seed: int = 0) -> pd.DataFrame:
    """Keys plus a continuous, a discrete, a constant and an all-null feature and a category, with bad values."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0.0, 1.0, N)
    x[:7] = [np.inf, -np.inf, np.nan, np.nan, np.inf, np.nan, np.nan]
    cat = rng.choice(["a", "b", "c"], N, p=[0.6, 0.3, 0.1]).astype(object)
    cat[:11] = None
    return pd.DataFrame({
        "device_id": [f"d{i % 17}" for i in range(N)],
        "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(N) // 17, unit="h"),
        "x": x, "k": rng.integers(0, 5, N).astype("int64"), "c": np.full(N, 5.0), "n": np.full(N, np.nan), "cat": cat,
    })


def profile_of(frame: pd.DataFrame, folder: Path, spec: DriftSpec) -> ReferenceProfile:
    with connect() as con:
        con.register("reference", frame)
        return build_reference(con, "reference", KINDS, spec, folder / SAMPLE_FILE)


def test_profile_counts_every_value_in_its_bin(tmp_path: Path):
    frame = reference_frame()
    spec = DriftSpec(bins=10, reference_sample=500)
    profile = profile_of(frame, tmp_path, spec)
    assert profile.rows == N and profile.sample_rows == 500 and profile.numeric == ["x", "k", "c", "n"]

    x = profile.feature("x")
    finite = frame["x"][np.isfinite(frame["x"])].to_numpy()
    assert (x.count, x.missing) == (len(finite), N - len(finite))
    assert np.allclose([x.mean, x.std, x.min, x.max], [finite.mean(), finite.std(ddof=1), finite.min(), finite.max()])
    assert x.binning == "quantiles" and len(x.edges) == spec.bins - 1 and x.edges == sorted(x.edges)
    bins = np.searchsorted(np.array(x.edges), finite, side="left")  # bins are (e[i-1], e[i]]
    assert x.counts == np.bincount(bins, minlength=spec.bins).tolist()
    # Edges are quantiles of the 500-row sample: every bin holds roughly a tenth of the whole reference.
    assert max(x.counts) < 1.6 * min(x.counts)

    k = profile.feature("k")  # five values: one bin each, plus empty bins below and above them
    assert k.binning == "values" and k.edges[1:] == [0.0, 1.0, 2.0, 3.0, 4.0] and k.edges[0] < 0.0
    assert k.counts == [0, *frame["k"].value_counts().sort_index().tolist(), 0]
    c = profile.feature("c")
    assert c.binning == "values" and c.edges[1:] == [5.0] and c.counts == [0, N, 0] and c.std == 0.0
    n = profile.feature("n")
    assert (n.binning, n.count, n.missing, n.mean) == ("empty", 0, N, None)
    cat = profile.feature("cat")
    assert dict(zip(cat.categories, cat.counts)) == frame["cat"].value_counts().to_dict()
    assert cat.missing == 11


def test_sample_is_bounded_and_does_not_depend_on_row_order(tmp_path: Path):
    spec = DriftSpec(reference_sample=200)
    frame = reference_frame()
    first = profile_of(frame, tmp_path / "a", spec)
    shuffled = profile_of(frame.sample(frac=1.0, random_state=3), tmp_path / "b", spec)
    assert first.sample_fingerprint == shuffled.sample_fingerprint
    for a, b in zip(first.features, shuffled.features):  # the same bins and counts; sums may differ in the last bit
        assert (a.edges, a.counts, a.categories, a.min, a.max) == (b.edges, b.counts, b.categories, b.min, b.max)
        assert (a.mean, a.std) == pytest.approx((b.mean, b.std))
    sample = pd.read_parquet(tmp_path / "a" / SAMPLE_FILE)
    assert len(sample) == 200 and list(sample.columns) == list(KINDS)
    # Spread over the whole window, not the first rows.
    assert sample["x"].isna().sum() <= 2
    everything = profile_of(frame, tmp_path / "c", DriftSpec(reference_sample=N + 50))
    assert everything.sample_rows == N


def test_profile_round_trips_and_refuses_a_mismatched_sample(tmp_path: Path):
    lake = Lake(tmp_path / "lake")
    with pytest.raises(ReferenceProfileError, match="materialize fleet_x/training_dataset first"):
        load_reference_profile(lake, "fleet_x")
    folder = lake.table_dir("fleet_x", "training_dataset")
    profile = profile_of(reference_frame(), folder, DriftSpec(reference_sample=300))
    (folder / PROFILE_FILE).write_text(profile.to_json())
    loaded = load_reference_profile(lake, "fleet_x")
    assert loaded.features == profile.features and loaded.path == folder / PROFILE_FILE
    assert len(load_reference_sample(loaded)) == 300
    profile_of(reference_frame(seed=1), folder, DriftSpec(reference_sample=300))  # a new sample, old profile
    with pytest.raises(ReferenceProfileError, match="does not match its profile"):
        load_reference_sample(loaded)


def test_training_dataset_writes_the_profile_of_its_train_split(tmp_path: Path):
    fleet = Fleet(tmp_path / "fleet", tmp_path / "data" / "lake", tmp_path / "data" / "landing")
    fleet.spec["target"] = {"horizon": f"{int(HORIZON.total_seconds() // 3600)}h"}
    fleet.write_profile()
    fleet.write_clean()
    tiny = TinyPipeline(fleet, tmp_path / "registry")
    tiny.build()
    meta = materializations(tiny.run("training_dataset"))[("training_dataset", None)]

    dataset = load_dataset_report(fleet.lake, fleet.name)
    profile = load_reference_profile(fleet.lake, fleet.name)
    assert profile.path == dataset.path.with_name(PROFILE_FILE) and dataset.path.with_name(SAMPLE_FILE).is_file()
    assert meta["reference_profile"] == str(profile.path)
    frame = pd.read_parquet(dataset.path)
    features, categorical = feature_columns(frame, fleet.profile())
    assert meta["reference_features"] == len(features) == len(profile.features)
    assert profile.categorical == categorical == ["model"]
    assert profile.dataset_fingerprint == dataset.fingerprint
    train = frame[frame["split"] == "train"]
    assert profile.rows == len(train) == dataset.rows["train"] < len(frame)
    for name in profile.numeric:
        ref, values = profile.feature(name), train[name].astype(float)
        assert ref.count == values.notna().sum() == sum(ref.counts), name
        if ref.count:
            assert ref.mean == pytest.approx(values.mean()), name
    model = profile.feature("model")
    assert dict(zip(model.categories, model.counts)) == train["model"].value_counts().to_dict()
    assert load_reference_sample(profile).shape == (len(train), len(features))  # 5000-row cap above the tiny train split
