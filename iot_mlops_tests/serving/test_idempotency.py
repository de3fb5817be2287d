"""Idempotency-Key on feedback: a retry returns the first response and stores nothing, also when the two race;
the key with another body is 409; keys are scoped to the API key."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import sqlalchemy as sa

from iot_mlops.opstore.engine import engine_for
from iot_mlops.opstore.feedback import FeedbackIn, FeedbackStore, feedback_fingerprint
from iot_mlops.opstore.predictions import PredictionLog
from iot_mlops.opstore.schema import feedback, idempotency_keys, metadata, predictions
from iot_mlops_tests.serving.conftest import KEYS, Api
from iot_mlops_tests.serving.test_feedback import served_prediction

BODY = {"type": "correct", "rating": 4, "source": "technician", "comment": "checked on site"}


def _post(api: Api, pid: str, key: str | None, body: dict = BODY, role: str = "operator"):
    headers = {"X-API-Key": KEYS[role], **({"Idempotency-Key": key} if key else {})}
    return api.client.post(f"/api/predictions/{pid}/feedback", json=body, headers=headers)


def _stored(api: Api) -> int:
    return len(FeedbackStore(api.settings.store).list())


def test_a_retry_with_the_key_returns_the_first_response_and_stores_nothing(api: Api):
    pid = served_prediction(api, alert=True)["prediction_id"]
    key, before = str(uuid.uuid4()), _stored(api)
    first = _post(api, pid, key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = _post(api, pid, key, {**BODY, "comment": "checked on site", "rating": 4})  # the same body, keys reordered
    assert (again.status_code, again.json(), again.headers["Idempotent-Replayed"]) == (201, first.json(), "true")
    assert _stored(api) == before + 1
    changed = _post(api, pid, key, {**BODY, "rating": 1})
    assert changed.status_code == 409 and "different request" in changed.json()["detail"]
    other_prediction = served_prediction(api, alert=False)["prediction_id"]
    assert _post(api, other_prediction, key).status_code == 409
    assert _stored(api) == before + 1
    # Keys are per API key: another client's same key is its own request. Without a key, every post is stored.
    assert _post(api, pid, key, role="admin").json()["id"] != first.json()["id"]
    assert _post(api, pid, None).json()["id"] != _post(api, pid, None).json()["id"]
    assert _stored(api) == before + 4


def test_a_refused_request_claims_no_key_bad_keys_are_422_and_the_header_is_documented(api: Api):
    pid, key = served_prediction(api, alert=False)["prediction_id"], str(uuid.uuid4())
    assert _post(api, pid, key, {**BODY, "type": "false_positive"}).status_code == 422  # no alert to be false
    assert _post(api, str(uuid.uuid4()), key).status_code == 404
    assert _post(api, pid, key).status_code == 201  # the key was not used up by the refusals
    for bad in ["", "x" * 256, "with space"]:
        response = api.client.post(f"/api/predictions/{pid}/feedback", json=BODY,
                                   headers={"X-API-Key": "operator-key-2", "Idempotency-Key": bad})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"], bad
    operation = api.client.get("/openapi.json").json()["paths"]["/api/predictions/{prediction_id}/feedback"]["post"]
    assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]
    assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"] and "409" in operation["responses"]


def test_concurrent_posts_with_one_key_store_one_row(api: Api):
    pid, key, before = served_prediction(api, alert=True)["prediction_id"], str(uuid.uuid4()), _stored(api)
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: _post(api, pid, key), range(12)))
    assert {r.status_code for r in responses} == {201} and len({r.json()["id"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert _stored(api) == before + 1


def test_the_request_whose_transaction_commits_the_key_first_wins(api: Api):
    """A transaction holding the key uncommitted: a post with the key waits for it, then answers with its row."""
    pid, key = served_prediction(api, alert=True)["prediction_id"], str(uuid.uuid4())
    engine, before, now = engine_for(api.settings.store), _stored(api), datetime.now(UTC).replace(tzinfo=None)
    responses = []
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            first = conn.execute(feedback.insert().values(dict(prediction_id=pid, created_at=now, **BODY))
                                 ).inserted_primary_key[0]
            conn.execute(idempotency_keys.insert().values(
                principal="operator-client", idempotency_key=key, feedback_id=first, created_at=now,
                fingerprint=feedback_fingerprint(pid, FeedbackIn.model_validate(BODY))))
            racer = threading.Thread(target=lambda: responses.append(_post(api, pid, key)))
            racer.start()
            racer.join(1.0)
            assert racer.is_alive()  # waiting for our transaction
        racer.join(30)
    assert responses[0].status_code == 201 and responses[0].json()["id"] == first
    assert responses[0].headers["Idempotent-Replayed"] == "true"
    assert _stored(api) == before + 1


def test_a_store_made_before_the_key_table_gets_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    metadata.create_all(old, tables=[predictions, feedback])
    pid = PredictionLog(old).record(fleet="f", device_id="d", ts=datetime(2026, 3, 2), model_name="m", model_version="1",
                                    predicted_component="tank", probabilities={"tank": 0.9})
    old.dispose()
    store = FeedbackStore(url)
    assert "idempotency_keys" in sa.inspect(store.engine).get_table_names()
    first = store.add_once(pid, BODY, principal="p", key="k")
    assert store.add_once(pid, BODY, principal="p", key="k") == (first[0], True) and len(store.list()) == 1
