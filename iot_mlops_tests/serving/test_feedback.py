"""POST /api/predictions/{id}/feedback: validated, stored, 201 with the stored id."""

from __future__ import annotations

import uuid

from iot_mlops.opstore.feedback import FeedbackStore
from iot_mlops_tests.serving.conftest import FRESH, STALE, Api


def served_prediction(api: Api, alert: bool) -> dict:
    """A served prediction that raised an alert (or none)."""
    for device in [*FRESH, STALE]:
        body = api.predict(device).json()
        if bool(body["alerts"]) == alert:
            return body
    raise AssertionError(f"no served device with alert={alert}")


def test_feedback_is_stored_and_returns_its_id(api: Api):
    prediction = served_prediction(api, alert=True)
    pid = prediction["prediction_id"]
    body = {"type": "false_positive", "rating": 2, "source": "technician", "comment": "element fine on site",
            "outcome_component": prediction["label"], "outcome_at": "2026-03-02T10:00:00+01:00"}
    response = api.post(f"/api/predictions/{pid}/feedback", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    stored = next(f for f in FeedbackStore(api.settings.store).list() if f.id == created["id"])
    assert created["prediction_id"] == stored.prediction_id == pid
    assert (stored.type, stored.rating, stored.comment, stored.source) == ("false_positive", 2, "element fine on site", "technician")
    assert stored.outcome_at.isoformat() == "2026-03-02T09:00:00"  # stored as naive UTC


def test_invalid_feedback_is_422_and_unknown_prediction_404_storing_nothing(api: Api):
    quiet = served_prediction(api, alert=False)["prediction_id"]
    store = FeedbackStore(api.settings.store)
    before = len(store.list())
    valid = {"type": "correct", "rating": 5, "source": "app"}
    for body in [{**valid, "rating": 6}, {**valid, "rating": "5"}, {**valid, "type": "great"}, {**valid, "extra": 1},
                 {**valid, "outcome_at": "2026-03-02T10:00:00"},  # a time without a component
                 {**valid, "outcome_component": "boiler"},  # not a component of the fleet
                 {**valid, "type": "false_positive"},  # the prediction raised no alert
                 {**valid, "comment": "nul\x00byte"}, {"rating": 3}]:
        response = api.post(f"/api/predictions/{quiet}/feedback", json=body)
        assert response.status_code == 422, (body, response.text)
        assert isinstance(response.json()["detail"], list)
    missing = api.post(f"/api/predictions/{uuid.uuid4()}/feedback", json=valid)
    assert missing.status_code == 404 and "unknown prediction id" in missing.json()["detail"]
    assert api.post("/api/predictions/not-a-uuid/feedback", json=valid).status_code == 422
    broken = api.client.post(f"/api/predictions/{quiet}/feedback", content=b"{not json",
                             headers={"X-API-Key": "operator-key-2", "content-type": "application/json"})
    assert broken.status_code == 422
    assert len(store.list()) == before
