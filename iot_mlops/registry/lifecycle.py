"""Alias moves (promote, reject, rollback), each recorded in the decision log with its reason and actor."""

from __future__ import annotations

from typing import Any

from iot_mlops.opstore.decisions import Decision, DecisionLog
from iot_mlops.registry.mlflow_service import CHALLENGER, CHAMPION, ModelNotFound, ModelRegistry

GATE_TAG = "gate"
PASSED = "passed"
REJECTED = "rejected"


class RollbackError(RuntimeError):
    """Rollback impossible: no champion, or no earlier version that passed its gate."""


def promote(registry: ModelRegistry, log: DecisionLog, *, fleet: str, name: str, version: str, reason: str,
            actor: str, details: dict[str, Any] | None = None, run_id: str | None = None) -> Decision:
    """Make `version` the champion (tagged gate=passed) and log the move."""
    version = str(version)
    previous = registry.alias_version(name, CHAMPION)
    registry.tag_version(name, version, GATE_TAG, PASSED)
    registry.set_alias(name, CHAMPION, version)
    if registry.alias_version(name, CHALLENGER) == version:
        registry.delete_alias(name, CHALLENGER)
    return _recorded(log, name, log.record(fleet, "promoted", reason, actor, model_name=name, from_version=previous,
                                           to_version=version, details=details, run_id=run_id))


def reject(registry: ModelRegistry, log: DecisionLog, *, fleet: str, name: str, version: str, reason: str,
           actor: str, details: dict[str, Any] | None = None, run_id: str | None = None) -> Decision:
    """Tag `version` gate=rejected and log it (from = the champion that stays, to = the rejected version)."""
    version = str(version)
    registry.tag_version(name, version, GATE_TAG, REJECTED)
    champion = registry.alias_version(name, CHAMPION)
    return _recorded(log, name, log.record(fleet, "rejected", reason, actor, model_name=name, from_version=champion,
                                           to_version=version, details=details, run_id=run_id))


def rollback(registry: ModelRegistry, log: DecisionLog, *, name: str, actor: str, reason: str,
             fleet: str | None = None) -> Decision:
    """Move `champion` to the newest earlier version that passed its gate; changes nothing when there is none.

    `fleet` defaults to the champion version's `fleet` tag.
    """
    try:
        versions = registry.versions(name)
    except ModelNotFound as error:
        raise RollbackError(str(error)) from error
    current = next((v for v in versions if CHAMPION in v.aliases), None)
    if current is None:
        raise RollbackError(f"model {name!r} has no champion to roll back from")
    earlier = [v for v in versions if int(v.version) < int(current.version) and v.tags.get(GATE_TAG) == PASSED]
    if not earlier:
        raise RollbackError(f"model {name!r}: no version before champion v{current.version} passed its gate")
    fleet = fleet or current.tags.get("fleet")
    if not fleet:
        raise RollbackError(f"model {name!r}: champion v{current.version} has no fleet tag; pass the fleet explicitly")
    target = max(earlier, key=lambda v: int(v.version))
    registry.set_alias(name, CHAMPION, target.version)
    return _recorded(log, name, log.record(fleet, "rollback", reason, actor, model_name=name,
                                           from_version=current.version, to_version=target.version))


def _recorded(log: DecisionLog, name: str, decision_id: int) -> Decision:
    return next(d for d in reversed(log.list(model_name=name)) if d.id == decision_id)


def history(log: DecisionLog, name: str) -> list[Decision]:
    """Every decision about model `name`, oldest first: alias moves and retraining triggers, with reason and actor."""
    return log.list(model_name=name)
