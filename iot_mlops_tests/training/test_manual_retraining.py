"""`<fleet>_retraining` launched by hand must give a reason, which goes to the decision log with the run."""

from __future__ import annotations

import dagster as dg

from iot_mlops.definitions import fleet_definitions
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops_tests.training.tiny import ALL_DAYS, INGEST, TinyPipeline


def retrain(tiny: TinyPipeline, reason: str | None) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions.merge(fleet_definitions(tiny.fleet.profile(), tiny.fleet.profile_dir), dg.Definitions(
        resources={"lake": tiny.lake, "registry": tiny.registry, "store": StoreResource(url=tiny.registry.store_url)}))
    config = {"ops": {f"{tiny.name}__training_dataset": {"config": {"reason": reason}}}} if reason is not None else None
    return defs.resolve_job_def(f"{tiny.name}_retraining").execute_in_process(
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
