"""`iot-mlops serve --workers N`: each worker listens on a socket of its own; a dead worker's socket is closed at once
and its replacement comes back on a fresh one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from iot_mlops.processes import stop_process_group
from iot_mlops.serving.workers import reuseport_sockets
from iot_mlops_tests.fleet import PROFILES

pytestmark = pytest.mark.integration  # `iot-mlops serve` in processes of its own


def test_reuseport_sockets_share_one_port_and_the_kernel_spreads_connections():
    sockets = reuseport_sockets("127.0.0.1", 0, 2)
    try:
        port = sockets[0].getsockname()[1]
        assert port != 0 and sockets[1].getsockname()[1] == port
        for s in sockets:
            s.listen(64)
            s.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        time.sleep(0.1)
        accepted = []
        for s in sockets:
            count = 0
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            accepted.append(count)
        for c in clients:
            c.close()
        assert sum(accepted) == 40 and min(accepted) > 0
    finally:
        for s in sockets:
            s.close()


def _listening(port: int) -> int:
    """Listening TCP sockets on the port (from /proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")


def _workers(parent: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return {int(p) for p in out if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(condition, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def _serves_every_new_connection(url: str, connections: int = 20) -> bool:
    """Fresh connections (the kernel picks a socket for each) all answered, each within a second."""
    for _ in range(connections):
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status != 200:
                    return False
        except OSError:
            return False
    return True


def test_more_than_one_worker_needs_postgres(tmp_path):
    env = {**os.environ, "IOT_MLOPS_DATA_DIR": str(tmp_path / "data"), "IOT_MLOPS_STORE_URL": f"sqlite:///{tmp_path / 'op.db'}"}
    done = subprocess.run([sys.executable, "-c", "from iot_mlops.cli import app; app()", "serve", "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--workers 2 needs a Postgres operational store" in done.stderr
    assert not (tmp_path / "op.db").exists()  # refused before anything was created


def test_each_worker_has_its_own_socket_and_a_killed_worker_stops_getting_connections_at_once(tmp_path, postgres_url):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "IOT_MLOPS_DATA_DIR": str(tmp_path / "data"), "IOT_MLOPS_LAKE_DIR": str(tmp_path / "lake"),
           "IOT_MLOPS_PROFILES_DIR": str(PROFILES), "IOT_MLOPS_STORE_URL": postgres_url,
           "IOT_MLOPS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "IOT_MLOPS_MLFLOW_ARTIFACTS_DIR": str(tmp_path / "artifacts"), "IOT_MLOPS_API_KEYS": ""}
    code = f"from iot_mlops.serving.cli import serve; serve(host='127.0.0.1', port={port}, workers=2, access_log=False)"
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    health = f"http://127.0.0.1:{port}/healthz"
    try:
        assert _wait(lambda: len(_workers(server.pid)) == 2 and _healthy(health)), (tmp_path / "serve.log").read_text()[-3000:]
        assert _wait(lambda: _listening(port) == 2)  # once both have started: one socket each, not one shared
        victim = min(_workers(server.pid))
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        # Its replacement takes seconds to load; meanwhile the dead worker's socket must be gone (or the kernel keeps
        # handing it half the new connections, which wait), and the replacement's not listening yet.
        assert _wait(lambda: _listening(port) == 1, timeout=1.0)
        time.sleep(max(0.0, killed + 1.0 - time.monotonic()))
        assert _serves_every_new_connection(health)
        assert _wait(lambda: len(_workers(server.pid)) == 2 and victim not in _workers(server.pid))
        assert _wait(lambda: _healthy(health) and _listening(port) == 2)
        assert _serves_every_new_connection(health)
    finally:
        stop_process_group(server)
        log.close()
    assert _wait(lambda: _listening(port) == 0, timeout=10)
