"""The champion gate end to end on Azure PdM: training_dataset -> failure_model -> champion_gate through Dagster.

The session's first run (every default) promotes v1. This module then registers a worse challenger (trained
on shuffled labels) and a better one (the failure_model asset again, with the default hyperparameters only),
gates each, and checks the decision log, the floor check and rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from iot_mlops.lake import Lake
from iot_mlops.names import TRIGGER_TAG
from iot_mlops.registry.assets import FLOOR_CHECK, GateConfig
from iot_mlops.registry.jobs import RollbackConfig, rollback_model
from iot_mlops.registry.lifecycle import GATE_TAG, history, promote, rollback
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION
from iot_mlops.registry.resource import RegistryResource
from iot_mlops.training.assets import FailureModelConfig
from iot_mlops.training.dataset import load_dataset_report
from iot_mlops.training.evaluate import evaluate
from iot_mlops.training.labels import label_column
from iot_mlops.training.model import ModelConfig
from iot_mlops.training.runs import dataset_tags
from iot_mlops.training.train import train_failure_model
from iot_mlops_tests.fleet import check_results, materializations
from iot_mlops_tests.training import pipeline
from iot_mlops_tests.training.pipeline import AZURE, AzureTrained, copy_registry, failures

DEFAULT = GateConfig()


def gate_outcome(result: dg.ExecuteInProcessResult, model: str) -> dict:
    return materializations(result)[("champion_gate", None)][model]


def floor_check(result: dg.ExecuteInProcessResult):
    return check_results(result)[("champion_gate", FLOOR_CHECK)]


@dataclass
class Gated:
    """After v1 (session run), v2 (shuffled labels, rejected) and v3 (failure_model asset again, promoted)."""

    trained: AzureTrained
    registry: RegistryResource
    worse_run: dg.ExecuteInProcessResult
    better_run: dg.ExecuteInProcessResult

    def gate(self, registry: RegistryResource, config: GateConfig = DEFAULT) -> dg.ExecuteInProcessResult:
        return pipeline.run(self.trained.assets, self.trained.lake, registry, "champion_gate", fleet=AZURE,
                            config={"champion_gate": config})


def register_shuffled_challenger(trained: AzureTrained, registry: RegistryResource) -> str:
    """A deliberately bad model, registered through the registry service: labels shuffled across the
    training rows, one hyperparameter candidate, one fold."""
    profile, lake = trained.profile, Lake(trained.lake_root)
    dataset = load_dataset_report(lake, AZURE)
    frame = pd.read_parquet(dataset.path)
    seen = frame.index[frame["split"] != "test"]
    columns = [label_column(c) for c in profile.components]
    shuffled = frame.copy()
    shuffled.loc[seen, columns] = frame.loc[seen, columns].to_numpy()[np.random.default_rng(7).permutation(len(seen))]
    config = ModelConfig(algorithm="logistic_regression", search_iterations=1, search_folds=1)
    result = train_failure_model(shuffled, profile, failures(trained.lake_root, AZURE), config)
    info = registry.registry().log_model_version(
        fleet=AZURE, model_name=trained.failure_name, model=result.model, X_example=frame[result.features].head(20),
        params={"algorithm": config.algorithm, "labels": "shuffled"}, metrics=result.test.flat("test_"),
        tags={**dataset_tags(dataset), "prediction_type": profile.target.prediction_type, "trigger": "shuffled-labels"},
        figures={}, json_artifacts={}, run_name="shuffled-labels")
    return info.version


@pytest.fixture(scope="module")
def gated(azure_trained: AzureTrained, tmp_path_factory) -> Gated:
    trained = azure_trained
    registry = copy_registry(trained.registry, tmp_path_factory.mktemp("gated_registry"))
    assert register_shuffled_challenger(trained, registry) == "2"
    worse = pipeline.run(trained.assets, trained.lake, registry, "champion_gate", fleet=AZURE)
    assert worse.success
    better = pipeline.run(trained.assets, trained.lake, registry, "failure_model", "champion_gate", fleet=AZURE,
                          config={"failure_model": FailureModelConfig(search_iterations=1)}, tags={TRIGGER_TAG: "test"})
    assert better.success
    return Gated(trained, registry, worse, better)


def test_first_model_is_promoted_above_the_floor(azure_trained: AzureTrained):
    result, trained = azure_trained.first_run, azure_trained
    store, log = pipeline.open_registry(trained.registry)
    for name, floor in ((trained.failure_name, DEFAULT.floor), (trained.anomaly_name, DEFAULT.anomaly_floor)):
        outcome = gate_outcome(result, name)
        assert (outcome["challenger"], outcome["champion_before"], outcome["champion_after"], outcome["promoted"]) == (
            "1", None, "1", True)
        assert outcome["challenger_score"] >= floor and outcome["reason"].startswith("first model")
        assert store.alias_version(name, CHAMPION) == "1" and store.alias_version(name, CHALLENGER) is None
        [decision] = history(log, name)
        assert (decision.action, decision.from_version, decision.to_version, decision.fleet) == ("promoted", None, "1", AZURE)
        assert decision.actor.startswith("champion_gate:manual:") and decision.reason == outcome["reason"]
    assert floor_check(result).passed

    # The version carries what produced it: data window, dataset fingerprint, code version, metrics.
    [version] = store.versions(trained.failure_name)
    dataset = load_dataset_report(Lake(trained.lake_root), AZURE)
    assert version.tags[GATE_TAG] == "passed" and version.tags["dataset_fingerprint"] == dataset.fingerprint
    assert version.tags["data_window"].startswith(f"{dataset.window[0]:%Y-%m-%dT%H:%M}..")
    assert version.tags["code_version"] and version.tags["trigger"] == "manual" and version.tags["fleet"] == AZURE
    assert {"test_macro_f1", "test_event_recall", "test_comp1_recall"} <= set(version.metrics)
    # The gate scored the same held-out rows the training run tested on, with the same model.
    assert gate_outcome(result, trained.failure_name)["challenger_score"] == pytest.approx(version.metrics["test_macro_f1"])


def test_worse_challenger_is_rejected_and_logged_with_both_scores(gated: Gated):
    name = gated.trained.failure_name
    store, log = pipeline.open_registry(gated.registry)
    outcome = gate_outcome(gated.worse_run, name)
    assert (outcome["challenger"], outcome["champion_before"], outcome["champion_after"], outcome["promoted"]) == (
        "2", "1", "1", False)
    assert outcome["challenger_score"] < outcome["champion_score"]
    rejected = next(d for d in history(log, name) if d.action == "rejected")
    assert (rejected.from_version, rejected.to_version, rejected.reason) == ("1", "2", outcome["reason"])
    assert rejected.details["challenger"]["macro_f1"] == pytest.approx(outcome["challenger_score"])
    assert rejected.details["champion"]["macro_f1"] == pytest.approx(outcome["champion_score"])
    assert set(rejected.details["challenger_recall"]) == set(gated.trained.profile.components)
    assert rejected.details["holdout_rows"] == len(gated.trained.test_rows())
    assert store.versions(name)[1].tags[GATE_TAG] == "rejected"
    assert floor_check(gated.worse_run).passed  # the champion that stayed is still above the floor


def test_better_challenger_is_promoted(gated: Gated):
    name = gated.trained.failure_name
    store, log = pipeline.open_registry(gated.registry)
    outcome = gate_outcome(gated.better_run, name)
    assert (outcome["challenger"], outcome["champion_before"], outcome["champion_after"], outcome["promoted"]) == (
        "3", "1", "3", True)
    assert outcome["challenger_score"] >= gate_outcome(gated.worse_run, name)["champion_score"] + DEFAULT.margin
    assert store.alias_version(name, CHAMPION) == "3" and store.alias_version(name, CHALLENGER) is None
    promoted = history(log, name)[-1]
    assert (promoted.action, promoted.from_version, promoted.to_version) == ("promoted", "1", "3")
    assert promoted.actor.startswith("champion_gate:test:")
    # No component's recall fell beyond the tolerance.
    drops = {c: promoted.details["champion_recall"][c] - promoted.details["challenger_recall"][c]
             for c in gated.trained.profile.components}
    assert max(drops.values()) <= DEFAULT.recall_tolerance
    # The anomaly model had no new challenger: its champion stays.
    anomaly = gate_outcome(gated.better_run, gated.trained.anomaly_name)
    assert (anomaly["challenger"], anomaly["champion_after"], anomaly["reason"]) == (None, "1", "no challenger to gate")
    assert floor_check(gated.better_run).passed


def test_decision_log_has_every_gate_decision_with_its_reason(gated: Gated):
    _, log = pipeline.open_registry(gated.registry)
    rows = history(log, gated.trained.failure_name)
    assert [(d.action, d.from_version, d.to_version) for d in rows] == [
        ("promoted", None, "1"), ("rejected", "1", "2"), ("promoted", "1", "3")]
    assert all(d.reason and d.fleet == AZURE and d.actor.startswith("champion_gate:") for d in rows)
    assert [d.action for d in history(log, gated.trained.anomaly_name)] == ["promoted"]


def test_floor_check_fails_when_the_champion_is_below_the_floor(gated: Gated, tmp_path: Path):
    registry = copy_registry(gated.registry, tmp_path / "registry")
    result = gated.gate(registry, GateConfig(floor=0.99))
    assert result.success  # the check reports; the champion is not taken away
    check = floor_check(result)
    assert not check.passed
    assert check.metadata["below_floor_or_missing"].value == [gated.trained.failure_name]
    outcome = gate_outcome(result, gated.trained.failure_name)
    assert outcome["champion_score"] < 0.99 and outcome["champion_after"] == "3"
    _, log = pipeline.open_registry(registry)
    assert len(history(log, gated.trained.failure_name)) == 3  # nothing to decide, nothing logged
    assert floor_check(gated.gate(registry)).passed  # the same champion passes the default floor


def test_rollback_restores_the_previous_champion(gated: Gated, tmp_path: Path):
    name = gated.trained.failure_name
    registry = copy_registry(gated.registry, tmp_path / "registry")
    store, log = pipeline.open_registry(registry)
    holdout = gated.trained.test_rows()
    v1_score = gate_outcome(gated.worse_run, name)["champion_score"]  # v1 was champion then

    decision = rollback(store, log, name=name, actor="cli:oncall", reason="v3 alerts too often")
    assert (decision.action, decision.from_version, decision.to_version, decision.fleet) == ("rollback", "3", "1", AZURE)
    assert store.alias_version(name, CHAMPION) == "1"
    champion = store.load_model(name, CHAMPION)
    assert evaluate(champion, holdout, gated.trained.profile, failures(gated.trained.lake_root, AZURE)).macro_f1 == pytest.approx(v1_score)

    # Re-promoted by hand, then rolled back from the Dagster UI's job.
    promote(store, log, fleet=AZURE, name=name, version="3", reason="investigated: fine", actor="cli:oncall")
    job = rollback_model.execute_in_process(
        run_config=dg.RunConfig(ops={"rollback_champion": RollbackConfig(fleet=AZURE, model_name=name, reason="again")}),
        resources={"registry": registry}, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert job.success
    assert store.alias_version(name, CHAMPION) == "1"
    last = history(log, name)[-1]
    assert (last.action, last.from_version, last.to_version, last.reason) == ("rollback", "3", "1", "again")
    assert last.actor == f"dagster:{job.run_id}"
    assert [d.action for d in history(log, name)][-3:] == ["rollback", "promoted", "rollback"]
