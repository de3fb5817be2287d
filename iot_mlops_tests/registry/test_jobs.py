"""The `rollback_model` Dagster job, executed in process with the registry resource."""

from __future__ import annotations

import dagster as dg

from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.registry.jobs import RegistryResource, RollbackConfig, rollback_model
from iot_mlops.registry.lifecycle import history, promote
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops_tests.registry.models import FLEET, NAME


def run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    config = RollbackConfig(fleet=FLEET, model_name=NAME, reason="drift alert on valve")
    return rollback_model.execute_in_process(
        run_config=dg.RunConfig(ops={"rollback_champion": config}),
        resources={"registry": RegistryResource.from_settings()}, instance=instance, raise_on_error=False)


def test_rollback_job(populated: ModelRegistry, decision_log: DecisionLog):
    instance = dg.DagsterInstance.ephemeral()
    failed = run(instance)  # no champion yet: a clean failure, nothing changed
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "has no champion to roll back from" in failure.step_failure_data.user_failure_data.description
    assert decision_log.list() == []

    for version in ("1", "3"):
        promote(populated, decision_log, fleet=FLEET, name=NAME, version=version, reason="gate", actor="sensor:gate")
    result = run(instance)
    assert result.success
    assert populated.alias_version(NAME, "champion") == "1"
    last = history(decision_log, NAME)[-1]
    assert (last.action, last.from_version, last.to_version, last.reason) == ("rollback", "3", "1", "drift alert on valve")
    assert last.actor == f"dagster:{result.run_id}" and last.fleet == FLEET
    assert result.output_for_node("rollback_champion") == last.id
