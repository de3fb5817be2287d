"""`<fleet>_retraining` launched by hand must give a reason, which goes to the decision log with the run."""

from __future__ import annotations

import dagster as dg
import pytest

from iot_mlops.automation.retraining import gate_verdicts, manual_retraining
from iot_mlops.definitions import fleet_definitions
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops_tests.training.tiny import ALL_DAYS, INGEST, TinyPipeline


def defs(tiny: TinyPipeline) -> dg.Definitions:
    return dg.Definitions.merge(fleet_definitions(tiny.fleet.profile(), tiny.fleet.profile_dir), dg.Definitions(
        resources={"lake": tiny.lake, "registry": tiny.registry, "store": StoreResource(url=tiny.registry.store_url)}))


def retrain(tiny: TinyPipeline, reason: str | None) -> dg.ExecuteInProcessResult:
    config = {"ops": {f"{tiny.name}__training_dataset": {"config": {"reason": reason}}}} if reason is not None else None
    return defs(tiny).resolve_job_def(f"{tiny.name}_retraining").execute_in_process(
        run_config=config, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def failed_step_message(result: dg.ExecuteInProcessResult, step: str) -> str:
    return next(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure and e.step_key == step)


def test_manual_retraining_without_a_reason_is_refused_and_logs_nothing(tiny: TinyPipeline):
    assert tiny.run(*INGEST, days=ALL_DAYS).success and tiny.run("labels", days=ALL_DAYS).success
    result = retrain(tiny, None)
    assert not result.success
    assert "needs a reason" in failed_step_message(result, f"{tiny.name}__training_dataset")
    assert tiny.registry.decision_log().list(fleet=tiny.name) == []


def test_manual_retraining_logs_its_reason_and_run(tiny: TinyPipeline):
    assert tiny.run(*INGEST, days=ALL_DAYS).success and tiny.run("labels", days=ALL_DAYS).success
    result = retrain(tiny, "new firmware on every pump")
    (decision,) = tiny.registry.decision_log().list(fleet=tiny.name)
    assert decision.action == "retrain_triggered" and decision.reason == "new firmware on every pump"
    assert decision.run_id == result.run_id and decision.details == {"sensor": "manual"}
    steps = {e.step_key for e in result.all_events if e.is_successful_output or e.event_type_value == "STEP_SUCCESS"}
    assert f"{tiny.name}__training_dataset" in steps


def test_cli_retraining_logs_inside_its_run_and_reports_each_step(tiny: TinyPipeline):
    assert tiny.run(*INGEST, days=ALL_DAYS).success and tiny.run("labels", days=ALL_DAYS).success
    events: list[tuple[str, str, float]] = []
    # The tiny fleet has too few failures to train on: the run fails at failure_model, after logging its trigger.
    result = manual_retraining(defs(tiny), tiny.name, "new firmware", "cli:alice", dg.DagsterInstance.ephemeral(),
                               on_event=lambda *event: events.append(event))
    assert not result.success
    log = tiny.registry.decision_log()
    (trigger,) = log.list(fleet=tiny.name)
    assert (trigger.action, trigger.run_id, trigger.actor, trigger.reason) == ("retrain_triggered", result.run_id, "cli:alice", "new firmware")
    assert [(s.split("__")[1], e) for s, e, _ in events] == [
        ("training_dataset", "STEP_START"), ("training_dataset", "STEP_SUCCESS"),
        ("failure_model", "STEP_START"), ("failure_model", "STEP_FAILURE")]
    assert all(seconds >= 0 for *_, seconds in events)
    assert gate_verdicts(log, result.run_id) == []


def test_gate_verdicts_name_the_model_version_and_reason(tmp_path):
    log = DecisionLog(f"sqlite:///{tmp_path / 'ops.db'}")
    log.record("f", "promoted", "macro F1 +0.04", "gate", model_name="f_failure", from_version="1", to_version="2", run_id="r1")
    log.record("f", "rejected", "tank recall -0.3", "gate", model_name="f_anomaly", from_version="1", to_version="2", run_id="r1")
    log.record("f", "promoted", "first", "gate", model_name="f_failure", to_version="1", run_id="r0")
    assert gate_verdicts(log, "r1") == ["f_failure v2 promoted (champion was v1): macro F1 +0.04",
                                        "f_anomaly v2 rejected (v1 stays champion): tank recall -0.3"]
    assert gate_verdicts(log, "r0") == ["f_failure v1 promoted (no champion before): first"]


def test_cli_retraining_of_an_unknown_fleet_logs_nothing(tiny: TinyPipeline):
    with pytest.raises(dg.DagsterInvariantViolationError):
        manual_retraining(defs(tiny), "no_such_fleet", "why", "cli:alice", dg.DagsterInstance.ephemeral())
    assert tiny.registry.decision_log().list() == []
