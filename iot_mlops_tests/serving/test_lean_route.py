"""LeanRoute answers as FastAPI's own route does for the same endpoint: guards first, then 422s, and the same docs."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from iot_mlops.serving.lean_route import LeanRoute


async def guard(request: Request) -> str:
    key = request.headers.get("x-key")
    if key is None:
        raise HTTPException(401, "missing key")
    if key != "reader":
        raise HTTPException(403, "wrong role")
    return key


async def endpoint(request: Request, kind: Annotated[str, Path(pattern=r"^[a-z_]+$", max_length=8)],
                   number: Annotated[int, Path(ge=1)], who: str = Depends(guard)) -> Response:
    """Echo the validated parameters."""
    if kind == "missing":
        raise HTTPException(404, "no such thing")
    return Response(f'{{"kind": "{kind}", "number": {number}, "who": "{who}", "path": "{request.url.path}"}}',
                    media_type="application/json")


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.router.add_api_route("/plain/{kind}/{number}", endpoint, methods=["GET"], tags=["t"])
    app.router.add_api_route("/lean/{kind}/{number}", endpoint, methods=["GET"], tags=["t"], route_class_override=LeanRoute)
    return TestClient(app)


@pytest.mark.parametrize(("path", "headers"), [
    ("/abc/3", {"x-key": "reader"}),
    ("/abc/3", {}),  # 401
    ("/abc/3", {"x-key": "admin"}),  # 403
    ("/ABC/0", {}),  # the guard answers before the parameters are checked
    ("/ABC/0", {"x-key": "reader"}),  # two 422 errors: pattern and bound
    ("/much_too_long/x", {"x-key": "reader"}),  # length and int parsing
    ("/missing/1", {"x-key": "reader"}),  # the endpoint's own 404
])
def test_same_answers_as_fastapis_own_route(client: TestClient, path: str, headers: dict):
    plain, lean = client.get("/plain" + path, headers=headers), client.get("/lean" + path, headers=headers)
    assert lean.status_code == plain.status_code
    body = lean.json()
    if lean.status_code == 200:
        assert body == {**plain.json(), "path": "/lean" + path}
    else:
        assert body == plain.json()


def test_documented_like_fastapis_own_route(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    plain, lean = paths["/plain/{kind}/{number}"]["get"], paths["/lean/{kind}/{number}"]["get"]
    assert {k: v for k, v in lean.items() if k != "operationId"} == {k: v for k, v in plain.items() if k != "operationId"}


def test_an_endpoint_it_cannot_serve_is_refused_at_startup():
    async def with_query(request: Request, q: Annotated[str, Query()]) -> Response:
        return Response(q)

    with pytest.raises(TypeError, match="query_params"):
        FastAPI().router.add_api_route("/x", with_query, methods=["GET"], route_class_override=LeanRoute)
