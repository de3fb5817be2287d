"""Registry jobs run from the Dagster UI: roll a model's champion back."""


import dagster as dg

from iot_mlops.registry.lifecycle import RollbackError, rollback
from iot_mlops.registry.resource import RegistryResource

__all__ = ["RegistryResource", "RollbackConfig", "rollback_model"]


class RollbackConfig(dg.Config):
    fleet: str
    model_name: str
    reason: str


@dg.op(description="Move `champion` to the newest earlier version that passed its gate, and log it.")
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, registry: RegistryResource) -> dg.Output[int]:
    try:
        decision = rollback(registry.registry(), registry.decision_log(), name=config.model_name, fleet=config.fleet,
                            actor=f"dagster:{context.run_id}", reason=config.reason)
    except RollbackError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    context.log.info(f"{config.model_name}: champion v{decision.from_version} -> v{decision.to_version}")
    return dg.Output(decision.id, metadata={"model": config.model_name, "from_version": decision.from_version,
                                            "to_version": decision.to_version, "decision_id": decision.id})


@dg.job(description="Roll a registered model's champion back to the previous version that passed its gate.")
def rollback_model() -> None:
    rollback_champion()
