"""The operational store's schema under Alembic: new stores, stores made before migrations, concurrent first use."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from iot_mlops.opstore import engine as opengine
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.opstore.feedback import FeedbackStore
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.opstore.schema import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'operational.db'}"
    return request.getfixturevalue("postgres_url")


def schema(engine: sa.Engine) -> dict[str, set[str]]:
    """Tables with their columns and index names, as the database reports them."""
    inspector = sa.inspect(engine)
    return {t: {c["name"] for c in inspector.get_columns(t)} | {i["name"] for i in inspector.get_indexes(t)}
            for t in inspector.get_table_names() if t != "alembic_version"}


def test_head_constant_is_the_newest_migration():
    config = Config()
    config.set_main_option("script_location", str(opengine.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == opengine.HEAD


def test_migrations_build_the_schema_the_code_declares(url: str, tmp_path):
    engine = opengine.engine_for.__wrapped__(url)
    declared = opengine.create_engine(f"sqlite:///{tmp_path / 'declared.db'}")
    metadata.create_all(declared)
    assert schema(engine) == schema(declared)
    with engine.connect() as conn:
        assert opengine.revision(conn) == opengine.HEAD


def test_a_store_made_before_migrations_is_upgraded_with_its_rows(url: str):
    """An old store: the baseline tables made by create_all, rows in them, no alembic_version."""
    old = opengine.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(opengine.MIGRATIONS))
    with opengine.write_transaction(old) as conn:
        config.attributes["connection"] = conn
        from alembic import command

        command.upgrade(config, "0001")
        conn.exec_driver_sql("DROP TABLE alembic_version")
    log = PredictionLog(old)
    pid = log.record(fleet="wh", device_id="WH-1", ts=datetime(2026, 1, 1), model_name="m", model_version="1",
                     predicted_component="tank", probabilities={"tank": 0.9})
    FeedbackStore(old).add(pid, {"type": "correct", "rating": 5, "source": "technician"})
    with old.begin() as conn:
        conn.exec_driver_sql("INSERT INTO decisions (created_at, fleet, action, reason, actor, run_id) "
                             "VALUES ('2026-01-01 00:00:00', 'wh', 'promoted', 'first model', 'gate', 'run-1')")
    assert "ix_decisions_run_id" not in schema(old)["decisions"]

    decisions = DecisionLog(url)  # first use through the code: stamps the baseline, then upgrades
    assert "ix_decisions_run_id" in schema(decisions.engine)["decisions"]
    assert [d.reason for d in decisions.list(run_id="run-1")] == ["first model"]
    assert PredictionLog(url).get(pid)["predicted_component"] == "tank"
    assert [r.type for r in FeedbackStore(url).list()] == ["correct"]
    with decisions.engine.connect() as conn:
        assert opengine.revision(conn) == opengine.HEAD


def test_processes_starting_together_migrate_once(url: str):
    """Engines of their own (as separate processes would have) all find the store at head, none fails."""
    errors = []

    def start() -> None:
        try:
            opengine.engine_for.__wrapped__(url).dispose()
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = opengine.create_engine(url)
    with engine.connect() as conn:
        assert opengine.revision(conn) == opengine.HEAD
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1


def test_downgrade_to_base_and_upgrade_again(url: str):
    from alembic import command

    engine = opengine.engine_for.__wrapped__(url)
    config = Config()
    config.set_main_option("script_location", str(opengine.MIGRATIONS))
    with opengine.write_transaction(engine) as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert schema(engine) == {}
    opengine.upgrade(engine)
    assert "ix_decisions_run_id" in schema(engine)["decisions"]
