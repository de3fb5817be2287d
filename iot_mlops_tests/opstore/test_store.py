"""The operational store of predictions and feedback, on SQLite and on the local Postgres server."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.opstore.engine import engine_for, write_transaction
from iot_mlops.opstore.feedback import FeedbackError, FeedbackIn, FeedbackStore, UnknownPredictionError
from iot_mlops.opstore.predictions import CHUNK, PredictionLog
from iot_mlops.opstore.schema import feedback, predictions
from iot_mlops_tests.opstore.writers import T0, add_feedback, prediction_frame, write_feedback_and_batches

COMPONENTS = ["heating_element", "valve"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'operational.db'}"
    return request.getfixturevalue("postgres_url")


def feedback_rows(url: str) -> int:
    with engine_for(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one()


def test_record_batch_is_idempotent_and_keeps_probabilities(url: str):
    log = PredictionLog(url)
    frame = prediction_frame(CHUNK + 2000)  # more than one chunk
    assert log.record_batch("wh", frame) == len(frame)
    assert log.record_batch("wh", frame) == 0  # re-materializing the day stores nothing twice
    overlapping = prediction_frame(3000, start=len(frame) - 2000)
    assert log.record_batch("wh", overlapping) == 1000
    assert log.count("wh") == len(frame) + 1000 and log.count("other") == 0 and log.count(source="batch") == len(frame) + 1000

    row = frame.iloc[4]
    stored = log.get(row["prediction_id"])
    assert stored["ts"] == row["ts"].to_pydatetime() and stored["device_id"] == row["device_id"]
    assert stored["probabilities"] == {"heating_element": row["p_heating_element"], "valve": row["p_valve"]}
    assert (stored["fleet"], stored["source"], stored["model_version"], stored["shadow"]) == ("wh", "batch", "3", None)
    assert log.get("unknown") is None
    assert log.record_batch("wh", frame.iloc[:0]) == 0


def test_online_prediction_with_shadow_output(url: str):
    log = PredictionLog(url)
    aware = datetime(2026, 1, 2, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    pid = log.record(fleet="wh", device_id="WH-1001", ts=aware, model_name="m", model_version="4",
                     predicted_component="valve", probabilities={"heating_element": 0.1, "valve": 0.8},
                     shadow={"model_version": "5", "probabilities": {"heating_element": 0.2, "valve": 0.4}, "predicted_component": "none"})
    plain = log.record(fleet="wh", device_id="WH-1002", ts=T0, model_name="m", model_version="4",
                       predicted_component="none", probabilities={"heating_element": 0.1, "valve": 0.2})
    stored = log.get(pid)
    assert stored["source"] == "api" and stored["ts"] == datetime(2026, 1, 2, 7, 0)  # stored as UTC
    assert stored["shadow"]["model_version"] == "5" and stored["shadow"]["probabilities"]["valve"] == 0.4
    with engine_for(url).connect() as conn:  # no challenger: SQL NULL, not JSON null
        assert conn.execute(sa.select(predictions.c.prediction_id).where(predictions.c.shadow.is_(None))).scalars().all() == [plain]
    with pytest.raises(ValueError, match="unknown prediction source 'web'"):
        log.record(fleet="wh", device_id="x", ts=T0, model_name="m", model_version="4", predicted_component="none",
                   probabilities={"valve": 0.1}, source="web")
    with pytest.raises(ValueError, match="predicted component 'pump'"):
        log.record(fleet="wh", device_id="x", ts=T0, model_name="m", model_version="4", predicted_component="pump",
                   probabilities={"valve": 0.1})
    assert log.count() == 2


BAD_FEEDBACK = [
    ("unknown prediction", "nope", {}, "unknown prediction id 'nope'"),
    ("rating too high", None, {"rating": 6}, "rating: Input should be less than or equal to 5"),
    ("rating too low", None, {"rating": 0}, "rating: Input should be greater than or equal to 1"),
    ("rating as text", None, {"rating": "3"}, "rating: Input should be a valid integer"),
    ("rating as float", None, {"rating": 2.5}, "rating: Input should be a valid integer"),
    ("rating as bool", None, {"rating": True}, "rating: Input should be a valid integer"),
    ("unknown type", None, {"type": "wrong"}, "type: Input should be 'false_positive', 'false_negative', 'correct' or 'unclear'"),
    ("unknown source", None, {"source": "email"}, "source: Input should be 'technician', 'app' or 'system'"),
    ("unknown component", None, {"outcome_component": "pump"}, "outcome component 'pump' is not a component of fleet wh"),
    ("time without component", None, {"outcome_at": "2026-01-02T03:00:00"}, "outcome_at needs outcome_component"),
    ("bad time", None, {"outcome_component": "valve", "outcome_at": "yesterday"}, "outcome_at: Input should be a valid datetime"),
    ("extra field", None, {"severity": "high"}, "severity: Extra inputs are not permitted"),
    ("missing rating", None, {"rating": None}, "rating: Input should be a valid integer"),
    ("false positive without alert", "p1", {"type": "false_positive"}, "prediction p1 raised no alert, so it cannot be a false positive"),
]


@pytest.mark.parametrize(("case", "prediction", "change", "message"), BAD_FEEDBACK, ids=[c[0] for c in BAD_FEEDBACK])
def test_invalid_feedback_is_refused_and_nothing_is_stored(url: str, case, prediction, change, message):
    PredictionLog(url).record_batch("wh", prediction_frame(6))
    store = FeedbackStore(url)
    data = {"type": "correct", "rating": 4, "source": "technician", **change}
    with pytest.raises(FeedbackError, match=message) as error:
        store.add(prediction or "p0", data)
    assert isinstance(error.value, ValueError)
    assert isinstance(error.value, UnknownPredictionError) == (case == "unknown prediction")
    assert feedback_rows(url) == 0 and store.list() == []


def test_valid_feedback_is_stored_with_its_prediction(url: str):
    PredictionLog(url).record_batch("wh", prediction_frame(6))
    store = FeedbackStore(url)
    body = FeedbackIn.model_validate_json(
        '{"type": "false_negative", "rating": 2, "source": "app", "outcome_component": "valve",'
        ' "outcome_at": "2026-01-01T05:30:00+01:00", "comment": "valve leaked"}')
    first = store.add("p1", body)
    second = store.add("p0", {"type": "false_positive", "rating": 1, "source": "technician"}, received_at=T0)
    assert second == first + 1
    records = store.list()
    assert [(r.id, r.prediction_id, r.type) for r in records] == [(first, "p1", "false_negative"), (second, "p0", "false_positive")]
    r = records[0]
    assert (r.outcome_component, r.outcome_at, r.comment, r.source, r.rating) == ("valve", datetime(2026, 1, 1, 4, 30), "valve leaked", "app", 2)
    assert (r.fleet, r.device_id, r.predicted_component, r.model_version) == ("wh", "d1", "none", "3")
    assert records[1].created_at == T0 and store.list(limit=1) == records[1:] and store.list(fleet="other") == []


def test_feedback_since_counts_and_false_positive_rate_among_alerts(url: str):
    log, store = PredictionLog(url), FeedbackStore(url)
    log.record_batch("wh", prediction_frame(30))  # alerts on p0, p3, p6, ...
    other = prediction_frame(3).assign(prediction_id=lambda f: "o" + f["prediction_id"])
    log.record_batch("other", other)
    since = datetime(2026, 2, 1)
    assert store.feedback_since("wh", since).false_positive_rate is None
    given = [  # (prediction, type, received)
        ("p0", "false_positive", since), ("p3", "false_positive", since + timedelta(hours=1)), ("p6", "correct", since),
        ("p9", "false_positive", since - timedelta(seconds=1)),  # before: not counted
        ("p1", "correct", since),  # no alert: counts, but not in the false-positive rate
        ("p2", "false_negative", since), ("p4", "unclear", since),
        ("op0", "false_positive", since),  # another fleet
    ]
    for pid, kind, received in given:
        store.add(pid, {"type": kind, "rating": 3, "source": "system"}, received_at=received)
    stats = store.feedback_since("wh", since)
    assert stats.count == 6
    assert stats.by_type == {"false_positive": 2, "false_negative": 1, "correct": 2, "unclear": 1}
    assert stats.alert_feedback == 3 and stats.false_positive_rate == pytest.approx(2 / 3)
    assert store.feedback_since("wh", since - timedelta(days=1)).false_positive_rate == pytest.approx(3 / 4)
    assert store.feedback_since("other", since).by_type["false_positive"] == 1


@pytest.mark.slow
def test_concurrent_writer_processes_lose_nothing(url: str):
    PredictionLog(url).record_batch("wh", prediction_frame(10))
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, ProcessPoolExecutor(4, mp_context=spawn) as pool:
        start = manager.Barrier(4)
        added = list(pool.map(write_feedback_and_batches, [url] * 4, range(4), [start] * 4))
    assert feedback_rows(url) == 80
    assert PredictionLog(url).count() == 10 + 200 and sum(added) == 200  # each new row added by exactly one writer


def test_a_sqlite_writer_waits_for_the_open_write_transaction_then_writes(tmp_path):
    """SQLite writers take turns: a second process's write waits for the first one's commit instead of failing."""
    url = f"sqlite:///{tmp_path / 'operational.db'}"
    PredictionLog(url).record_batch("wh", prediction_frame(3))
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    writer = spawn.Process(target=add_feedback, args=(url, ready))
    with write_transaction(engine_for(url)) as conn:
        conn.execute(feedback.insert().values(prediction_id="p0", created_at=T0, type="unclear", rating=3, source="app"))
        writer.start()
        assert ready.wait(60)
        writer.join(1.5)
        assert writer.is_alive()  # waiting for the lock, not failed with "database is locked"
    writer.join(60)
    assert writer.exitcode == 0
    with engine_for(url).connect() as conn:
        assert conn.execute(sa.select(feedback.c.prediction_id).order_by(feedback.c.id)).scalars().all() == ["p0", "p1"]


def test_store_resource_from_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("IOT_MLOPS_STORE_URL", f"sqlite:///{tmp_path / 'custom' / 'ops.db'}")
    resource = StoreResource.from_settings()
    assert resource.resolved_url() == f"sqlite:///{tmp_path / 'custom' / 'ops.db'}"
    assert resource.predictions().record_batch("wh", prediction_frame(3)) == 3
    assert resource.feedback().add("p0", {"type": "correct", "rating": 5, "source": "app"}) == 1
    assert (tmp_path / "custom" / "ops.db").is_file()
