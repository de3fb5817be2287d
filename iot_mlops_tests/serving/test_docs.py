"""/docs and /redoc work offline: every asset they reference is served by the app itself, without a key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from iot_mlops.serving.app import create_app
from iot_mlops.settings import Settings
from iot_mlops_tests.fleet import PROFILES

REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|\burl: '([^']+)'""")


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The app without its lifespan: the docs need no models."""
    return TestClient(create_app(Settings(data_dir=tmp_path, profiles_dir=PROFILES)))


@pytest.mark.parametrize("page, script", [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_docs_pages_reference_only_same_origin_assets_that_are_served(client: TestClient, page: str, script: str):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.I), "a reference to another host"
    urls = [a or b for a, b in REFERENCE.findall(html)]
    assert "/openapi.json" in urls and any(url.endswith(script) for url in urls)
    for url in urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        kind = asset.headers["content-type"]
        if url.endswith(".js"):
            assert "javascript" in kind and len(asset.content) > 100_000, (url, kind)
        elif url.endswith(".css"):
            assert kind.startswith("text/css"), (url, kind)
        elif url == "/openapi.json":
            assert "/api/predictions/{device_type}/{device_id}/{prediction_type}" in asset.json()["paths"]
        else:
            assert kind.startswith("image/"), (url, kind)


def test_swagger_ui_calls_no_online_validator(client: TestClient):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_docs_routes_stay_out_of_the_schema(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc", "/static"))]
