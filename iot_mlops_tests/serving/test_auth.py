"""API keys and roles: reader < operator < admin; missing or unknown key 401, too low a role 403; health needs none."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from iot_mlops.serving.auth import KeyRing, Role, hash_key, parse_keys
from iot_mlops.serving.cli import keys_app
from iot_mlops_tests.serving.conftest import DEVICE_TYPE, FAILURE, FRESH, Api

PREDICT = f"/api/predictions/{DEVICE_TYPE}/{FRESH[0]}/component_failure"
BATCH = {"items": [{"device_type": DEVICE_TYPE, "device_id": FRESH[0], "prediction_type": "component_failure"}]}
FEEDBACK = {"type": "correct", "rating": 4, "source": "technician"}
# (method, path, body, lowest role allowed)
ENDPOINTS = [
    ("GET", PREDICT, None, Role.reader),
    ("GET", "/api/models", None, Role.reader),
    ("GET", f"/api/models/{FAILURE}", None, Role.reader),
    ("GET", f"/api/models/{FAILURE}/history", None, Role.reader),
    ("GET", f"/api/models/{FAILURE}/shadow", None, Role.reader),
    ("POST", "/api/predictions/batch", BATCH, Role.operator),
    ("POST", "/api/predictions/00000000-0000-4000-8000-000000000000/feedback", FEEDBACK, Role.operator),
    ("POST", "/api/models/no_such_model/rollback", {"reason": "auth test"}, Role.admin),
]


def test_every_protected_endpoint_checks_key_and_role(api: Api):
    for method, path, body, lowest in ENDPOINTS:
        call = lambda headers: api.client.request(method, path, json=body, headers=headers)
        assert call({}).status_code == 401, path
        assert call({"X-API-Key": "not-a-key"}).status_code == 401, path
        for role in Role:
            status = call({"X-API-Key": {"reader": "reader-key-1", "operator": "operator-key-2", "admin": "admin-key-3"}[role.name]}).status_code
            if role < lowest:
                assert status == 403, (path, role)
            else:
                assert status not in (401, 403), (path, role, status)
    response = api.client.get(PREDICT)
    assert response.json()["detail"].startswith("missing API key")


def test_health_readiness_and_docs_need_no_key(api: Api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] and ready.json()["store"]
    assert api.client.get("/docs").status_code == 200
    schema = api.client.get("/openapi.json").json()
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])


def test_key_configuration_is_hashes_only_and_bad_entries_are_clear_errors():
    digest = hash_key("s3cret")
    ring = KeyRing(parse_keys(f" {digest}:operator:field-app , {hash_key('other')}:reader"))
    assert ring.identify("s3cret").role == Role.operator and ring.identify("s3cret").name == "field-app"
    assert ring.identify("other").name == f"key-{hash_key('other')[:8]}"
    with pytest.raises(ValueError, match="entry 1: the hash must be 64 hex digits"):
        parse_keys("s3cret:admin")
    with pytest.raises(ValueError, match="entry 2: unknown role 'root'"):
        parse_keys(f"{digest}:admin,{digest}:root")
    assert parse_keys("") == []


def test_keys_hash_cli_prints_the_sha256_and_an_entry():
    runner = CliRunner()
    assert runner.invoke(keys_app, ["hash", "s3cret"]).output.strip() == hash_key("s3cret")
    assert runner.invoke(keys_app, ["hash", "--role", "admin", "--name", "ops"], input="s3cret\n").output.strip() == \
        f"{hash_key('s3cret')}:admin:ops"
    created = runner.invoke(keys_app, ["new", "--role", "operator"]).output.splitlines()
    key, entry = created[0].split()[-1], created[1].split()[-1]
    assert entry == f"{hash_key(key)}:operator"
    assert runner.invoke(keys_app, ["hash", "--role", "root", "x"]).exit_code == 1
