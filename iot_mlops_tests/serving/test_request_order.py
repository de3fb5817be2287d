"""The key comes first on every route: 401/403 before a body is read (413) or validated (422); a body over the limit
is 413 whether its length is declared or it is chunked (through the test client and as raw HTTP to uvicorn)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from iot_mlops.serving.app import create_app
from iot_mlops.serving.auth import Role
from iot_mlops_tests.serving.conftest import DEVICE_TYPE, FAILURE, KEYS, Api, Served, served_settings, serving_settings
from iot_mlops_tests.serving.test_auth import ENDPOINTS

LIMIT = 16_000  # the test app's body limit
WRITES = [(path, body, lowest) for method, path, body, lowest in ENDPOINTS if method == "POST"]
JSON = {"content-type": "application/json"}


def _chunks(size: int = 2 * LIMIT) -> Iterator[bytes]:
    """A JSON body sent chunked (no Content-Length), `size` bytes in all."""
    yield b'{"comment": "'
    for _ in range(size // 1000):
        yield b"x" * 1000
    yield b'"}'


def _bodies() -> dict[str, dict]:
    """Bodies a route refuses: keyword arguments of a client request, by why it is refused."""
    return {"invalid JSON": {"content": b"{not json", "headers": JSON},
            "invalid fields": {"json": {"unexpected": 1}},
            "declared over the limit": {"content": b"{}" + b" " * 2 * LIMIT, "headers": JSON},
            "chunked over the limit": {"content": _chunks(), "headers": JSON}}


def test_no_key_is_401_and_too_low_a_role_403_before_the_body_is_read_or_validated(api: Api):
    for path, _, lowest in WRITES:
        for why in _bodies():
            for key, status in [(None, 401), ("not-a-key", 401), *[(KEYS[r.name], 403) for r in Role if r < lowest]]:
                request = _bodies()[why]  # a fresh chunk generator each time
                headers = {**request.get("headers", {}), **({"X-API-Key": key} if key else {})}
                response = api.client.post(path, **{**request, "headers": headers})
                assert response.status_code == status, (path, why, key, response.text)
                assert response.json()["detail"].startswith(("missing API key", "unknown API key", "this endpoint needs"))


def test_reads_check_the_key_before_their_parameters(api: Api):
    bad = [(f"/api/models/{FAILURE}/shadow?day=9999-99-99", 422), ("/api/models/bad%20name!", 422),
           (f"/api/predictions/{DEVICE_TYPE}/bad%20id!/component_failure", 422)]
    for path, invalid in bad:
        assert api.client.get(path).status_code == 401, path
        assert api.client.get(path, headers={"X-API-Key": KEYS["reader"]}).status_code == invalid, path


def test_with_the_key_a_body_over_the_limit_is_413_and_an_invalid_one_422(api: Api):
    for path, _, lowest in WRITES:
        for why, request in _bodies().items():
            headers = {**request.get("headers", {}), "X-API-Key": KEYS[lowest.name]}
            response = api.client.post(path, **{**request, "headers": headers})
            expected = 413 if "limit" in why else 422
            assert response.status_code == expected, (path, why, response.text)
            if expected == 413:
                assert response.json() == {"detail": f"request body over {LIMIT} bytes"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, served: Served) -> Iterator[int]:
    """The app under uvicorn in a thread, on a free localhost port; yields the port."""
    root = tmp_path_factory.mktemp("raw")
    settings = served_settings(root, served, f"sqlite:///{root / 'operational.db'}")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(settings, serving_settings()), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if uv.started:
                break
            thread.join(0.1)
        assert uv.started
        yield sock.getsockname()[1]
    finally:
        uv.should_exit = True
        thread.join(30)
        sock.close()


def _raw(port: int, head: list[str], body: bytes) -> int:
    """Send a request as raw bytes; the response's status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        received = b""
        while b"\r\n" not in received:
            data = conn.recv(4096)
            if not data:
                break
            received += data
    return int(received.split(b" ", 2)[1])


def test_raw_chunked_and_declared_bodies_over_the_limit(server: int):
    path = WRITES[1][0]  # feedback: operator
    chunk = b"x" * 9000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (b'{"comment": "' + chunk, chunk))  # no last chunk
    for key, status in [(None, 401), (KEYS["reader"], 403), (KEYS["operator"], 413)]:
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *([f"X-API-Key: {key}"] if key else [])]
        assert _raw(server, [*head, "Transfer-Encoding: chunked"], chunked) == status, key
        assert _raw(server, [*head, f"Content-Length: {10 * LIMIT}"], b"{}") == status, key
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", f"X-API-Key: {KEYS['operator']}",
            "Transfer-Encoding: chunked"]
    assert _raw(server, head, b"9\r\n{not json\r\n0\r\n\r\n") == 422
