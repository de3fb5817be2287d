"""Promotion, rejection and rollback on a real registry, each move in the decision log (SQLite and Postgres)."""

from __future__ import annotations

import psycopg2
import pytest

from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.registry.gate import GatePolicy, decide
from iot_mlops.registry.lifecycle import RollbackError, history, promote, reject, rollback
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops.settings import psycopg2_url
from iot_mlops_tests.registry.conftest import VERSION_METRICS
from iot_mlops_tests.registry.models import FLEET, NAME

POLICY = GatePolicy()


def run_gate(registry: ModelRegistry, log: DecisionLog, version: str):
    """What the champion gate asset does: compare with the champion, then promote or reject."""
    score, recall = VERSION_METRICS[version]
    champion = registry.alias_version(NAME, "champion")
    best, best_recall = VERSION_METRICS[champion] if champion else (None, None)
    decision = decide(POLICY, {"macro_f1": score}, None if best is None else {"macro_f1": best}, recall, best_recall)
    move = promote if decision.promote else reject
    return move(registry, log, fleet=FLEET, name=NAME, version=version, reason=decision.reason,
                actor="sensor:test_gate", details={"challenger_score": score, "champion_score": best})


def aliases(registry: ModelRegistry) -> dict[str, list[str]]:
    return {v.version: list(v.aliases) for v in registry.versions(NAME)}


def test_first_model_above_floor_is_promoted(populated: ModelRegistry, decision_log: DecisionLog):
    decision = run_gate(populated, decision_log, "1")
    assert (decision.action, decision.from_version, decision.to_version) == ("promoted", None, "1")
    assert populated.alias_version(NAME, "champion") == "1"
    assert populated.versions(NAME)[0].tags["gate"] == "passed"


def test_worse_challenger_is_rejected_and_logged(populated: ModelRegistry, decision_log: DecisionLog):
    run_gate(populated, decision_log, "1")
    decision = run_gate(populated, decision_log, "2")
    assert (decision.action, decision.from_version, decision.to_version) == ("rejected", "1", "2")
    assert "does not beat champion" in decision.reason and decision.details["challenger_score"] == 0.6
    assert populated.alias_version(NAME, "champion") == "1"
    assert populated.versions(NAME)[1].tags["gate"] == "rejected"


def test_better_challenger_is_promoted_and_loses_its_challenger_alias(populated: ModelRegistry, decision_log: DecisionLog):
    for version in ("1", "2", "3"):
        run_gate(populated, decision_log, version)
    assert aliases(populated) == {"1": [], "2": [], "3": ["champion"]}
    assert [v.tags["gate"] for v in populated.versions(NAME)] == ["passed", "rejected", "passed"]
    rows = history(decision_log, NAME)
    assert [(d.action, d.from_version, d.to_version, d.actor) for d in rows] == [
        ("promoted", None, "1", "sensor:test_gate"), ("rejected", "1", "2", "sensor:test_gate"),
        ("promoted", "1", "3", "sensor:test_gate")]


def test_rollback_restores_the_previous_passed_champion(populated: ModelRegistry, decision_log: DecisionLog):
    for version in ("1", "2", "3"):
        run_gate(populated, decision_log, version)
    decision = rollback(populated, decision_log, name=NAME, actor="cli:alice", reason="v3 floods false alarms")
    assert populated.alias_version(NAME, "champion") == "1"  # v2 was rejected, so it is skipped
    assert (decision.action, decision.fleet, decision.from_version, decision.to_version) == ("rollback", FLEET, "3", "1")
    last = history(decision_log, NAME)[-1]
    assert (last.action, last.from_version, last.to_version, last.actor, last.reason) == (
        "rollback", "3", "1", "cli:alice", "v3 floods false alarms")
    assert last.created_at is not None


@pytest.mark.parametrize("promoted", [(), ("1",)], ids=["no-champion", "no-earlier-passed-version"])
def test_rollback_without_history_errors_and_changes_nothing(populated: ModelRegistry, decision_log: DecisionLog, promoted):
    for version in promoted:
        run_gate(populated, decision_log, version)
    before_aliases, before_log = aliases(populated), history(decision_log, NAME)
    with pytest.raises(RollbackError, match="no champion" if not promoted else "no version before champion v1"):
        rollback(populated, decision_log, name=NAME, actor="cli:alice", reason="oops")
    assert aliases(populated) == before_aliases and history(decision_log, NAME) == before_log


def test_rollback_of_an_unknown_model_errors(registry: ModelRegistry, decision_log: DecisionLog):
    with pytest.raises(RollbackError, match="no registered model named 'unknown'"):
        rollback(registry, decision_log, name="unknown", actor="cli:alice", reason="oops")
    assert decision_log.list() == []


def test_decision_log_on_postgres(populated: ModelRegistry, postgres_url: str):
    log = DecisionLog(psycopg2_url(postgres_url))
    try:
        for version in ("1", "2", "3"):
            run_gate(populated, log, version)
        rollback(populated, log, name=NAME, actor="dagster:run-1", reason="drift after firmware update")
        rows = history(log, NAME)
        assert [(d.action, d.from_version, d.to_version) for d in rows] == [
            ("promoted", None, "1"), ("rejected", "1", "2"), ("promoted", "1", "3"), ("rollback", "3", "1")]
        assert rows[1].details == {"challenger_score": 0.6, "champion_score": 0.7}
    finally:
        log.engine.dispose()
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:  # really in Postgres
        cur.execute("SELECT action, actor FROM decisions WHERE model_name = %s ORDER BY id DESC LIMIT 1", [NAME])
        assert cur.fetchone() == ("rollback", "dagster:run-1")
