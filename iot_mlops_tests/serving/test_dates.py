"""Every date and time the API takes: out-of-range values (offsets past year 1 or 9999 in UTC, a last day without a
next one) are 422s in FastAPI's error shape, never 500s."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from iot_mlops.opstore.feedback import FeedbackStore
from iot_mlops.serving import schemas
from iot_mlops_tests.serving.conftest import FAILURE, Api
from iot_mlops_tests.serving.test_feedback import served_prediction

SHADOW = f"/api/models/{FAILURE}/shadow"
VALID_FEEDBACK = {"type": "correct", "rating": 4, "source": "technician"}
# (where, operation, field): every date or date-time parameter and body field in the OpenAPI schema.
FIELDS = {("query", "/api/models/{name}/shadow", "day"), ("body", "/api/predictions/{prediction_id}/feedback", "outcome_at")}
BAD_DAYS = ["9999-12-31"]
GOOD_DAYS = ["0001-01-01", "9999-12-30"]
BAD_TIMES = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59+01:00", "9999-12-31T23:00:00-05:00",
             "9999-12-31T23:59:59.999999-00:01"]
GOOD_TIMES = ["0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00", "9999-12-31T23:59:59Z", "9999-12-31T18:59:59-05:00"]


def _date_fields(schema: dict) -> set[tuple[str, str, str]]:
    """(in, path, name) of the date and date-time parameters and (top-level) body properties."""
    def is_date(s: dict) -> bool:
        return s.get("format") in ("date", "date-time") or any(is_date(a) for a in s.get("anyOf", []))

    out = set()
    for path, operations in schema["paths"].items():
        for op in operations.values():
            out |= {(p["in"], path, p["name"]) for p in op.get("parameters", []) if is_date(p["schema"])}
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
                out |= {("body", path, name) for name, prop in body.get("properties", {}).items() if is_date(prop)}
    return out


def test_the_table_covers_every_date_input(api: Api):
    assert _date_fields(api.client.get("/openapi.json").json()) == FIELDS


def test_out_of_range_days_and_times_are_422_and_store_nothing(api: Api):
    for day in BAD_DAYS:
        response = api.get(SHADOW, params={"day": day})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "day"]
    for day in GOOD_DAYS:
        assert api.get(SHADOW, params={"day": day}).json()["predictions"] == 0
    prediction = served_prediction(api, alert=True)
    path, component = f"/api/predictions/{prediction['prediction_id']}/feedback", prediction["label"]
    store = FeedbackStore(api.settings.store)
    before = len(store.list())
    for value in BAD_TIMES:
        response = api.post(path, json={**VALID_FEEDBACK, "outcome_component": component, "outcome_at": value})
        assert response.status_code == 422, (value, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "outcome_at"]
    assert len(store.list()) == before
    for value in GOOD_TIMES:
        response = api.post(path, json={**VALID_FEEDBACK, "outcome_component": component, "outcome_at": value})
        assert response.status_code == 201, (value, response.text)
        stored = next(f for f in store.list() if f.id == response.json()["id"])
        assert stored.outcome_at == datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)


offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(timezones=st.none() | offsets))
@example(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
@example(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))))
@settings(max_examples=300, deadline=None)
def test_any_outcome_time_is_stored_as_utc_or_refused(value: datetime):
    body = {**VALID_FEEDBACK, "outcome_component": "tank", "outcome_at": value.isoformat()}
    naive, offset = value.replace(tzinfo=None), value.utcoffset() or timedelta()
    in_range = datetime.min + max(offset, timedelta()) <= naive <= datetime.max + min(offset, timedelta())
    try:
        parsed = schemas.FeedbackBody.model_validate_json(json.dumps(body))
    except ValidationError as error:
        assert [e["loc"] for e in error.errors()] == [("outcome_at",)] and not in_range
        return
    assert in_range and parsed.outcome_at.tzinfo is None and parsed.outcome_at + offset == naive


@given(st.dates())
@example(date.max)
@settings(max_examples=300, deadline=None)
def test_any_day_is_queried_as_a_whole_day_or_refused(day: date):
    adapter = TypeAdapter(schemas.Day)
    try:
        parsed = adapter.validate_python(day.isoformat())
    except ValidationError:
        assert day == date.max
        return
    assert datetime.combine(parsed, time()) + timedelta(days=1) > datetime.combine(parsed, time())


@pytest.mark.parametrize("day", ["0", "2026-1-1", "20260101", "2026-02-30"])
def test_malformed_days_are_422(api: Api, day: str):
    assert api.get(SHADOW, params={"day": day}).status_code == 422
