"""Drift: PSI / chi-square / KS edge cases, verdicts equal to Evidently's on a simulator drift scenario, the asset."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from iot_mlops.lake import Lake, connect
from iot_mlops.lake.resource import LakeResource
from iot_mlops.monitoring.drift import DriftError, compute_drift, day_relation, drift_history, psi
from iot_mlops.monitoring.drift_assets import drift_assets
from iot_mlops.monitoring.drift_day import experiment_name
from iot_mlops.monitoring.evidently_report import REPORT_FILE, day_sample, run_evidently
from iot_mlops.monitoring.reference import SAMPLE_FILE, build_reference, load_reference_profile, load_reference_sample
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import FleetProfile, load_profile
from iot_mlops.profiles.monitoring import DriftSpec
from iot_mlops_tests.fleet import PROFILES, RANGE_END, RANGE_START
from iot_mlops_tests.training.pipeline import all_assets, registry_resource, run, step_error

# --------------------------------------------------------------------------- edge cases on synthetic data

KINDS = {"x": "numeric", "c": "numeric", "n": "numeric", "cat": "categorical", "one": "categorical"}


def frame(seed: int, rows: int = 2000, **columns) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {"device_id": [f"d{i % 13}" for i in range(rows)], "ts": pd.date_range("2026-01-01", periods=rows, freq="min"),
            "x": rng.normal(10.0, 2.0, rows), "c": np.full(rows, 5.0), "n": np.full(rows, np.nan),
            "cat": rng.choice(["a", "b"], rows, p=[0.7, 0.3]), "one": np.full(rows, "z", dtype=object)}
    return pd.DataFrame({**data, **columns})


@pytest.fixture
def synthetic(tmp_path: Path):
    with connect() as con:
        con.register("reference", frame(0))
        reference = build_reference(con, "reference", KINDS, DriftSpec(reference_sample=2000), tmp_path / SAMPLE_FILE)
    return reference, pd.read_parquet(tmp_path / SAMPLE_FILE)


def drift_of(current: pd.DataFrame, reference, sample, spec: DriftSpec | None = None):
    with connect() as con:
        con.register("current", current)
        return compute_drift(con, "current", reference, sample, spec or DriftSpec())


def test_same_distribution_does_not_drift(synthetic):
    reference, sample = synthetic
    result = drift_of(frame(1), reference, sample)
    by = {f.feature: f for f in result.features}
    assert not result.drifted and result.share == 0.0 and not result.dataset_drift
    assert by["x"].method == "psi" and 0 <= by["x"].statistic < 0.05
    assert by["c"].statistic == 0.0  # constant on both sides
    assert (by["one"].method, by["one"].p_value) == ("chisquare", 1.0)  # one category on both sides
    assert by["n"].method == "untested" and [f.feature for f in result.tested] == ["x", "c", "cat", "one"]


def test_new_category_moved_constant_and_vanished_feature_drift(synthetic):
    reference, sample = synthetic
    bad = np.full(2000, np.nan)
    bad[:5] = np.inf  # non-finite values count as missing
    current = frame(1, c=np.full(2000, 6.0), x=bad, cat=np.where(np.arange(2000) % 10 == 0, "new", "a"))
    result = drift_of(current, reference, sample)
    by = {f.feature: f for f in result.features}
    assert (by["cat"].method, by["cat"].p_value, by["cat"].drifted) == ("chisquare", 0.0, True)
    assert by["c"].drifted and by["c"].statistic > 10  # 6.0 falls in the bin above the reference's only value
    assert (by["x"].method, by["x"].current_count, by["x"].drifted) == ("missing", 0, True)
    assert sorted(result.drifted) == ["c", "cat", "x"] and result.share == 0.75 and result.dataset_drift
    # Evidently (same bins) agrees on every feature it can compare (it refuses empty columns: x, n).
    theirs = run_evidently(current, sample, reference, DriftSpec(), same_bins=True)
    assert theirs.verdicts == {"c": True, "cat": True, "one": False}
    assert theirs.scores["c"] == pytest.approx(by["c"].statistic)


def test_ks_on_the_raw_sample_catches_a_shift_psi_misses(synthetic):
    reference, sample = synthetic
    spec = DriftSpec(ks_features=["x"])
    current = frame(1, rows=20000, x=np.random.default_rng(5).normal(10.3, 2.0, 20000))
    x = next(f for f in drift_of(current, reference, sample, spec).features if f.feature == "x")
    assert x.method == "ks" and x.drifted and x.p_value < 1e-6 and x.psi < spec.psi_threshold
    with pytest.raises(DriftError, match=r"ks_features \['cat', 'nope'\] are not numeric"):
        drift_of(current, reference, sample, DriftSpec(ks_features=["cat", "nope"]))


def test_empty_day_and_missing_columns_are_clear_errors(synthetic, tmp_path: Path):
    reference, sample = synthetic
    with pytest.raises(DriftError, match="no feature rows"):
        drift_of(frame(1).head(0), reference, sample)
    with pytest.raises(DriftError, match="feature column.* missing: cat"):
        drift_of(frame(1).drop(columns=["cat"]), reference, sample)
    with pytest.raises(DriftError, match="materialize f/features for 2026-01-02 first"):
        day_relation(Lake(tmp_path), "f", date(2026, 1, 2))


def test_psi_fills_empty_bins_like_evidently():
    assert psi([10, 20, 30], [1, 2, 3]) == 0.0
    assert psi([0, 10, 10, 0], [0, 10, 10, 0]) == 0.0  # bins empty on both sides are skipped
    # current fills a bin the reference never saw: its reference share becomes 0.0001
    expected = (0.0001 - 0.5) * np.log(0.0001 / 0.5) + (1 - 0.5) * np.log(1 / 0.5)
    assert psi([10, 0], [5, 5]) == pytest.approx(expected)


# --------------------------------------------------------------------------- the simulator drift scenario

DRIFT_FROM = date(2026, 1, 7)
BEFORE = DRIFT_FROM - timedelta(days=1)
LAST = date(2026, 1, 8)
KS = ["inlet_temp_c_mean_1h", "pressure_bar_mean_6h"]
FLEET = "water_heaters"


@dataclass
class Scenario:
    profile: FleetProfile
    profile_dir: Path
    lake_root: Path

    def copy_lake(self, target: Path) -> LakeResource:
        shutil.copytree(self.lake_root, target / "lake")
        return LakeResource(root=str(target / "lake"), landing_root=str(target / "landing"))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    """12 simulated heaters: training dataset from Jan 1-5; from Jan 7 inlet water 6 degC colder and 3 new-model heaters."""
    root = tmp_path_factory.mktemp("drift_scenario")
    spec = yaml.safe_load((PROFILES / "water_heaters.yaml").read_text())
    spec["source"]["simulator"] = {"devices": 12, "seed": 7, "epoch": "2026-01-01", "drift": {
        "seasonal_inlet_shift_from": DRIFT_FROM.isoformat(), "new_model_batch_from": DRIFT_FROM.isoformat(),
        "new_model_batch_size": 3}}
    spec["partitions"] = {"start": "2026-01-01", "end": LAST.isoformat()}
    spec["features"].update(windows=["1h", "6h"], aggregations=["mean", "max"], differences=False)
    spec["target"]["horizon"] = "6h"
    # Fixed thresholds: the verdicts are compared with Evidently's, which knows no calibration (test_calibration).
    # Device-relative features left out as the shipped profile does: the reference's first days have no baselines yet.
    spec["monitoring"] = {"drift": {"ks_features": KS, "calibrate": False, "ignore": ["*_z_7d", "*_vs_model"]}}
    (root / "profiles").mkdir()
    (root / "profiles" / f"{FLEET}.yaml").write_text(yaml.safe_dump(spec))
    profile = load_profile(root / "profiles" / f"{FLEET}.yaml")
    lake = LakeResource(root=str(root / "lake"), landing_root=str(root / "landing"))
    assets, registry = all_assets(profile, root / "profiles"), registry_resource(root / "registry")
    assert run(assets, lake, registry, "devices", "telemetry", "events", "features", fleet=FLEET,
               days=(date(2026, 1, 1), LAST)).success
    assert run(assets, lake, registry, "labels", fleet=FLEET, days=(date(2026, 1, 1), date(2026, 1, 5))).success
    assert run(assets, lake, registry, "training_dataset", fleet=FLEET).success
    return Scenario(profile, root / "profiles", root / "lake")


def day_drift(scenario: Scenario, day: date):
    """Our result and the whole day (as the Evidently side gets it) against the stored reference."""
    lake = Lake(scenario.lake_root)
    reference = load_reference_profile(lake, FLEET)
    sample = load_reference_sample(reference)
    with connect() as con:
        relation = day_relation(lake, FLEET, day)
        ours = compute_drift(con, relation, reference, sample, scenario.profile.monitoring.drift)
        current = day_sample(con, relation, reference, rows=10**6)
    assert len(current) == ours.rows
    return ours, current, reference, sample


def test_fast_path_verdicts_equal_evidentlys_on_the_same_data(scenario: Scenario):
    spec = scenario.profile.monitoring.drift
    shares = {}
    for day in (BEFORE, DRIFT_FROM):
        ours, current, reference, sample = day_drift(scenario, day)
        assert reference.sample_rows == reference.rows  # the raw sample is the whole train split: same data
        theirs = run_evidently(current, sample, reference, spec, same_bins=True)
        compared = {f.feature: f for f in ours.tested if f.method != "missing"}
        assert set(theirs.verdicts) == set(compared)
        assert theirs.verdicts == {name: f.drifted for name, f in compared.items()}, day
        for name, f in compared.items():
            assert theirs.methods[name] == f.method
            assert theirs.scores[name] == pytest.approx(f.statistic if f.method == "psi" else f.p_value, rel=1e-9, abs=1e-12)
        shares[day] = ours.share
        # Colder inlet water: every inlet feature drifts; the day before, PSI sees none (KS, far more sensitive,
        # already sees the few days between the training window and then).
        inlet = [f for f in ours.tested if f.feature.startswith("inlet_temp_c") and (day >= DRIFT_FROM or f.method == "psi")]
        assert len(inlet) >= 3 and all(f.drifted == (day >= DRIFT_FROM) for f in inlet), [(f.feature, f.statistic) for f in inlet]
    by = {f.feature: f for f in ours.features}
    assert by["model"].drifted and by["model"].p_value == 0.0  # the new model is a category never seen in training
    assert {f for f in KS} <= {f.feature for f in ours.tested if f.method == "ks"}
    assert shares[DRIFT_FROM] > shares[BEFORE] + 0.2


def drift_asset_run(scenario: Scenario, lake: LakeResource, registry, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(drift_assets(FleetContext.of(scenario.profile, scenario.profile_dir)), resources={"lake": lake, "registry": registry},
                          raise_on_error=False, **kwargs)


def test_drift_report_asset_writes_the_day_and_links_evidently(scenario: Scenario, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("IOT_MLOPS_MLFLOW_UI_URL", "http://mlflow.example:5000/")
    lake = scenario.copy_lake(tmp_path)
    registry = registry_resource(tmp_path / "registry")
    result = drift_asset_run(scenario, lake, registry, partition_key=DRIFT_FROM.isoformat())
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.partition == DRIFT_FROM.isoformat()
    metadata = event.materialization.metadata
    assert isinstance(metadata["drift_share"], dg.FloatMetadataValue)

    store = Lake(Path(lake.root))
    table = pd.read_parquet(store.partition_file(FLEET, "drift_report", DRIFT_FROM))
    reference = load_reference_profile(store, FLEET)
    assert sorted(table["feature"]) == sorted(f.name for f in reference.features)
    assert {"feature", "kind", "method", "statistic", "p_value", "threshold", "drifted", "drift_share",
            "dataset_drift", "evidently_drifted"} <= set(table.columns)
    share = table["drift_share"].iloc[0]
    assert metadata["drift_share"].value == pytest.approx(share) == table.loc[table["method"] != "untested", "drifted"].mean()
    assert metadata["drifted_features"].value == table["drifted"].sum() > 0
    assert metadata["dataset_drift"].value == table["dataset_drift"].iloc[0]
    assert "inlet_temp_c" in metadata["top_drifted"].value
    assert table["evidently_drifted"].notna().sum() > 0.8 * len(table)
    # Evidently's report bins raw values its own way (Sturges bins over both sides), yet sees the clear drift
    # too, and none where PSI on our bins is tiny.
    by_psi = table[table["method"] == "psi"]
    strong, calm = by_psi[by_psi["statistic"] >= 1.0], by_psi[by_psi["statistic"] < 0.02]
    assert len(strong) >= 5 and strong["evidently_drifted"].all()
    assert len(calm) and not calm["evidently_drifted"].any()
    compared = table[table["evidently_drifted"].notna()]
    assert metadata["evidently_agreement"].value == pytest.approx((compared["evidently_drifted"] == compared["drifted"]).mean())
    assert drift_history(store, FLEET) == [(DRIFT_FROM, pytest.approx(share), bool(table["dataset_drift"].iloc[0]))]

    client = mlflow.MlflowClient(registry.tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(FLEET))
    [run_info] = client.search_runs([experiment.experiment_id])
    assert metadata["evidently_report"].value == (f"http://mlflow.example:5000/#/experiments/{experiment.experiment_id}"
                                                  f"/runs/{run_info.info.run_id}/artifactPath/evidently/{REPORT_FILE}")
    assert [a.path for a in client.list_artifacts(run_info.info.run_id, "evidently")] == [f"evidently/{REPORT_FILE}"]
    # Stored once: in MLflow, nothing beside the partition.
    assert metadata["evidently_html"].value == f"{run_info.info.artifact_uri}/evidently/{REPORT_FILE}"
    html = Path(mlflow.artifacts.download_artifacts(metadata["evidently_html"].value, dst_path=str(tmp_path / "dl")))
    assert "<html" in html.read_text()[:2000].lower()
    assert not store.partition_file(FLEET, "drift_report", DRIFT_FROM).with_name(REPORT_FILE).exists()
    # Both verdicts, Evidently's from its run's own result.
    evidently_drifted = set(table.loc[table["evidently_drifted"].eq(True), "feature"])
    assert metadata["evidently_drifted_features"].value == len(evidently_drifted) > 0
    assert metadata["evidently_tested_features"].value == table["evidently_drifted"].notna().sum()
    assert metadata["evidently_drift_share"].value == pytest.approx(len(evidently_drifted) / table["evidently_drifted"].notna().sum())
    assert run_info.data.metrics["evidently_drift_share"] == pytest.approx(metadata["evidently_drift_share"].value)
    disagree = set(table.loc[table["drifted"], "feature"]) ^ evidently_drifted
    assert all(f"`{name}`" in metadata["verdicts_disagree"].value for name in sorted(disagree)[:10])
    assert "quantile bins" in metadata["drift_explanation"].value
    assert run_info.data.metrics["drift_share"] == pytest.approx(share)


def test_range_run_records_each_days_drift_share(scenario: Scenario, tmp_path: Path):
    lake = scenario.copy_lake(tmp_path)
    result = drift_asset_run(scenario, lake, registry_resource(tmp_path / "registry"),
                             tags={RANGE_START: BEFORE.isoformat(), RANGE_END: LAST.isoformat()},
                             run_config=dg.RunConfig(ops={f"{FLEET}__drift_report": {"config": {"evidently": False}}}))
    assert result.success
    plotted = {e.partition: e.materialization.metadata["drift_share"].value for e in result.get_asset_materialization_events()}
    history = drift_history(Lake(Path(lake.root)), FLEET)
    assert [d for d, _, _ in history] == [BEFORE, DRIFT_FROM, LAST]
    assert plotted == {d.isoformat(): pytest.approx(s) for d, s, _ in history}
    assert history[0][1] < history[1][1]


def test_drift_report_without_a_reference_names_what_to_materialize(scenario: Scenario, tmp_path: Path):
    shutil.copytree(scenario.lake_root / FLEET / "features", tmp_path / "lake" / FLEET / "features")
    lake = LakeResource(root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))
    result = drift_asset_run(scenario, lake, registry_resource(tmp_path / "registry"), partition_key=DRIFT_FROM.isoformat())
    assert not result.success
    assert f"materialize {FLEET}/training_dataset first" in step_error(result)
