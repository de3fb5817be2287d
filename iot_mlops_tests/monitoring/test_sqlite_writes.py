"""Steady SQLite write streams: writer processes take turns on the file lock, checkpoints run off the commit path."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from iot_mlops.monitoring import store as st
from iot_mlops.monitoring.sqlite_writes import WalCheckpointer

COMPONENTS = {"heating_element": 0.2, "valve": 0.1}


def records(n: int, device: str) -> list[dict]:
    now = datetime.now(UTC)
    return [dict(fleet="wh", device_id=device, ts=now, model_name="wh_component_failure", model_version="1",
                 predicted_component="none", probabilities=COMPONENTS) for _ in range(n)]


def write_many(url: str, worker: int, batches: int) -> None:
    log = st.PredictionLog(st.engine_for(url, autocheckpoint=False))
    for _ in range(batches):
        log.record_many(records(5, f"d{worker}"))


def test_writer_processes_take_turns_and_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'operational.db'}"
    st.PredictionLog(url)  # tables first
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=write_many, args=(url, w, 60)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    with st.engine_for(url).connect() as conn:
        per_device = dict(conn.execute(sa.select(st.predictions.c.device_id, sa.func.count())
                                       .group_by(st.predictions.c.device_id)).all())
    assert per_device == {"d0": 300, "d1": 300, "d2": 300}
    assert (tmp_path / "operational.db.write-lock").exists()


def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path):
    database = tmp_path / "operational.db"
    url = f"sqlite:///{database}"
    log = st.PredictionLog(st.engine_for(url, autocheckpoint=False))
    for _ in range(400):  # far past the 1,000 WAL pages at which a commit would checkpoint
        log.record_many(records(4, "d0"))
    wal = Path(f"{database}-wal")
    assert wal.stat().st_size > 1000 * 4096
    before = database.stat().st_size
    assert log.count() == 1600

    checkpointer = WalCheckpointer(st.engine_for(url), seconds=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while database.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
    assert database.stat().st_size > before  # the rows reached the database file
    assert st.PredictionLog(url).count() == 1600


def test_prediction_ids_are_uuid7_in_time_order():
    import uuid

    ids = []
    for _ in range(5):
        ids.append(st.new_prediction_id())
        time.sleep(0.002)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert sorted(ids) == ids and len(set(ids)) == 5


def test_a_wal_written_to_without_pause_starts_over_and_stays_bounded(tmp_path):
    database = tmp_path / "operational.db"
    url = f"sqlite:///{database}"
    st.PredictionLog(url)  # tables first
    checkpointer = WalCheckpointer(st.engine_for(url), restart_frames=200)
    stop, written = threading.Event(), []

    def writer() -> None:
        log = st.PredictionLog(st.engine_for(url, autocheckpoint=False))
        while not stop.is_set():
            log.record_many(records(5, "d0"))
            written.append(5)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = []
        for _ in range(30):
            time.sleep(0.05)
            seen.append(checkpointer.checkpoint())
    finally:
        stop.set()
        thread.join()
    frames = [f for f, _ in seen]
    assert max(frames) > 200 and any(b < a for a, b in zip(frames, frames[1:]))  # it grew past the limit, then restarted
    assert any(f == c for f, c in seen)  # a restart copies every frame
    assert st.PredictionLog(url).count() == sum(written)
