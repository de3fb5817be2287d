#!/usr/bin/env python
"""Benchmark: the prediction service (`iot-mlops serve`) against `mlflow models serve` of the same champion,
then 10,000 concurrent feedback posts to a Postgres-backed service.

Run on demand from the repository root (loopback only, nothing downloaded; about two minutes):

    python bench/serving.py            # 15 s measured per side after 3 s of warm-up
    python bench/serving.py --quick    # 5 s per side, 2,000 feedback posts

Setup, in a temporary folder: a water-heater champion as the profile trains it (logistic regression over 120
features, the project's pipeline with per-component thresholds) on synthetic rows, saved with skops and registered
in MLflow (SQLite) as `water_heaters_component_failure@champion`, plus a challenger (so the service also scores in
shadow, as it does while a challenger waits at the gate), and online features for 200 devices.

1. Single prediction: the real server process (uvicorn, `--workers`, operational store on Postgres) answers
   `GET /api/predictions/water_heater/{device}/component_failure`, each client cycling over the 200 devices
   (features lookup, champion + shadow challenger,
   explanation, the prediction recorded) under `--clients` concurrent keep-alive clients in a closed loop; then
   `mlflow models serve --env-manager local` of the same champion, same number of workers, answers
   `POST /invocations` with the same feature row (dataframe_split). The servers run one after the other.
2. Feedback: a server on a fresh Postgres database; 10,000 predictions are stored, then one feedback POST per
   prediction, all issued at once over `--feedback-connections` connections; every response must be 201 and
   the feedback table must hold exactly 10,000 rows.

The load generator is a separate process: raw keep-alive HTTP/1.1 connections on uvloop, a few microseconds of
client CPU per request (the feedback burst uses aiohttp); latency is measured from just before the request is sent
to the end of the response body, requests/s over the measured window. It shares the machine's cores with the
servers, on both sides alike.
Ends with `throughput_vs_mlflow_serve: X.XX` (ours / mlflow's requests per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, spawn_worker

from iot_mlops.processes import stop_process_group

NAME = "water_heaters_component_failure"
COMPONENTS = ["heating_element", "tank", "thermostat", "seal"]
DEVICES = [f"WH-{1001 + i}" for i in range(200)]
KEY = "bench-key"
PG = os.environ.get("IOT_MLOPS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def feature_names() -> list[str]:
    sensors = ["temperature_c", "pressure_bar", "flow_lpm", "power_kw", "energy_kwh", "element_current_a", "inlet_temp_c"]
    names = [f"{s}_{a}_{w}" for s in sensors for w in ("1h", "6h", "24h") for a in ("mean", "std", "min", "max")]
    names += [f"{s}_diff_1h" for s in sensors] + [f"{s}_pct_change_1h" for s in sensors]
    names += [f"errors_E0{i}_24h" for i in range(1, 7)] + [f"hours_since_error_E0{i}" for i in range(1, 7)]
    names += [f"hours_since_maintenance_{c}" for c in COMPONENTS] + ["heat_rise_c", "power_per_flow", "current_per_kw"]
    return names + ["age_years", "capacity_l"]


def frame(rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(0, 1, (rows, len(feature_names()))), columns=feature_names())
    X["model"] = rng.choice(["AquaHeat-50", "AquaHeat-80", "ThermoMax-120"], rows)
    return X


def setup(work: Path) -> dict:
    """Champion, challenger and online features under `work`; returns the server environment and the feature row."""
    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from iot_mlops.lake import Lake, atomic_write
    from iot_mlops.opstore.decisions import DecisionLog
    from iot_mlops.registry.lifecycle import promote
    from iot_mlops.registry.mlflow_service import ModelRegistry
    from iot_mlops.serving.auth import hash_key
    from iot_mlops.training.model import ModelConfig, build_pipeline, with_thresholds

    env = {"IOT_MLOPS_DATA_DIR": str(work / "data"), "IOT_MLOPS_LAKE_DIR": str(work / "lake"),
           "IOT_MLOPS_PROFILES_DIR": str(ROOT / "profiles"), "IOT_MLOPS_STORE_URL": f"sqlite:///{work / 'operational.db'}",
           "IOT_MLOPS_MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "IOT_MLOPS_MLFLOW_ARTIFACTS_DIR": str(work / "artifacts"), "IOT_MLOPS_API_KEYS": f"{hash_key(KEY)}:admin:bench"}
    registry = ModelRegistry(env["IOT_MLOPS_MLFLOW_TRACKING_URI"], work / "artifacts")
    log = DecisionLog(env["IOT_MLOPS_STORE_URL"])
    X = frame(5000, 0)
    signal_ = X["temperature_c_mean_24h"] + X["pressure_bar_max_6h"] + (X["model"] == "ThermoMax-120")
    Y = pd.DataFrame({c: (signal_ + np.random.default_rng(i).normal(0, 1, len(X)) > 2.5).astype(int) for i, c in enumerate(COMPONENTS)})
    for seed, C in ((1, 0.1), (2, 1.0)):
        with threadpool_limits(1):
            model = build_pipeline(ModelConfig(algorithm="logistic_regression"), ["model"], {"logisticregression__C": C})
            model = with_thresholds(model.fit(X, Y.to_numpy()), {c: 0.5 for c in COMPONENTS}, X, Y)
        info = registry.log_model_version(fleet="water_heaters", model_name=NAME, model=model, X_example=X.head(20),
                                          params={"C": C}, metrics={}, tags={"prediction_type": "component_failure"},
                                          figures={}, json_artifacts={}, run_name=f"bench-{seed}")
        if seed == 1:
            promote(registry, log, fleet="water_heaters", name=NAME, version=info.version, reason="bench", actor="bench")
    online = frame(len(DEVICES), 9)
    online.insert(0, "ts", (datetime.now(UTC) - timedelta(minutes=20)).replace(tzinfo=None))
    online.insert(0, "device_id", DEVICES)
    atomic_write(Lake(work / "lake").table_file("water_heaters", "online_features"), lambda tmp: online.to_parquet(tmp, index=False))
    row = online.iloc[0]
    columns = [c for c in X.columns]
    return {"env": env, "columns": columns, "row": [row[c].item() if hasattr(row[c], "item") else row[c] for c in columns]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(command, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=str(ROOT),
                            start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def ours(work: Path, env: dict, workers: int, log_name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = ("from iot_mlops.serving.cli import serve; "
            f"serve(host='127.0.0.1', port={port}, workers={workers}, log_level='warning', access_log=False)")
    log = work / log_name
    process = start([sys.executable, "-c", code], env, log)
    wait_ready(f"http://127.0.0.1:{port}/readyz", process, log)
    # /readyz answers once one worker is up; clients connecting before the others listen would all stay on it.
    deadline = time.monotonic() + 120
    while listening(port) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    return process, f"http://127.0.0.1:{port}"


def listening(port: int) -> int:
    """Listening TCP sockets on the port (one per worker), from /proc/net/tcp."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")


def mlflow_serve(work: Path, env: dict, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = work / "mlflow_serve.log"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    process = start(command, {**env, "MLFLOW_TRACKING_URI": env["IOT_MLOPS_MLFLOW_TRACKING_URI"]}, log)
    wait_ready(f"http://127.0.0.1:{port}/ping", process, log)
    return process, f"http://127.0.0.1:{port}"


# --- load generator (its own process) ------------------------------------------------------------


class _Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: send a request, resolve a future when the whole response is in."""

    def __init__(self):
        self.buffer, self.needed, self.status, self.waiter = bytearray(), None, 0, None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.needed is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            start = head.find(b"content-length:")
            if start < 0:
                self.waiter.set_exception(RuntimeError("response without Content-Length"))
                return
            stop = head.find(b"\r\n", start)
            self.needed = end + 4 + int(head[start + 15:stop if stop > 0 else None])
        if len(self.buffer) >= self.needed:
            del self.buffer[:self.needed]
            self.needed = None
            self.waiter.set_result(self.status)

    def connection_lost(self, exc):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def send(self, request: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def _requests(case: dict) -> list[bytes]:
    """The raw requests a client cycles through (one per path)."""
    body = json.dumps(case["body"]).encode() if case.get("body") is not None else b""
    out = []
    for path in case["paths"]:
        head = f"{case['method']} {path} HTTP/1.1\r\nHost: {case['host']}:{case['port']}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in case.get("headers", {}).items())
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        out.append(head.encode() + b"\r\n" + body)
    return out


async def closed_loop(case: dict) -> dict:
    """`clients` keep-alive connections, each sending its next request as soon as the last answer is in."""
    latencies, statuses = [], Counter()
    requests = _requests(case)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    measure, end = start + case["warmup"], start + case["warmup"] + case["duration"]

    async def client(offset: int):
        transport, exchange = await loop.create_connection(_Exchange, case["host"], case["port"])
        n = offset
        while (t0 := time.perf_counter()) < end:
            status = await exchange.send(requests[n % len(requests)])
            n += 1
            if t0 >= measure:
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
        transport.close()

    await asyncio.gather(*(client(i) for i in range(case["clients"])))
    return {"latencies_ms": summarize(latencies), "requests": len(latencies), "rps": len(latencies) / case["duration"],
            "statuses": {str(k): v for k, v in statuses.items()}}


async def burst(case: dict) -> dict:
    """Every feedback POST issued at once (the connector caps open connections); no retries."""
    import aiohttp

    latencies, statuses = [], Counter()
    connector = aiohttp.TCPConnector(limit=case["connections"])
    body = json.dumps({"type": "correct", "rating": 4, "source": "app", "comment": "benchmark"}).encode()
    headers = {**case["headers"], "content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def post(pid: str):
            t0 = time.perf_counter()
            try:
                async with session.post(f"{case['url']}/api/predictions/{pid}/feedback", data=body, headers=headers) as r:
                    await r.read()
                    statuses[r.status] += 1
            except aiohttp.ClientError as error:
                statuses[type(error).__name__] += 1
            latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(post(pid) for pid in case["ids"]))
        elapsed = time.perf_counter() - start
    return {"latencies_ms": summarize(latencies), "requests": len(latencies), "rps": len(latencies) / elapsed,
            "seconds": elapsed, "statuses": {str(k): v for k, v in statuses.items()}}


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def summarize(latencies: list[float]) -> dict:
    import numpy as np

    if not latencies:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    ms = np.asarray(latencies) * 1000
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def run_load(case_file: Path) -> None:
    import uvloop

    case = json.loads(case_file.read_text())
    result = uvloop.run(burst(case) if case["mode"] == "burst" else closed_loop(case))
    print("RESULT " + json.dumps(result), flush=True)


# --- the run --------------------------------------------------------------------------------------


@contextmanager
def postgres_database():
    """A fresh database on the bench's Postgres server (IOT_MLOPS_BENCH_PG), dropped afterwards."""
    import psycopg2

    database = f"iot_mlops_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    try:
        yield f"{PG}/{database}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def feedback_phase(work: Path, env: dict, workers: int, posts: int, connections: int) -> tuple[dict, int]:
    import sqlalchemy as sa

    from iot_mlops.opstore.engine import engine_for
    from iot_mlops.opstore.predictions import PredictionLog
    from iot_mlops.opstore.schema import feedback

    with postgres_database() as url:
        now = datetime.now(UTC)
        records = [dict(fleet="water_heaters", device_id=DEVICES[i % len(DEVICES)], ts=now, model_name=NAME, model_version="1",
                        predicted_component="none", probabilities={c: 0.1 for c in COMPONENTS}) for i in range(posts)]
        ids = PredictionLog(url).record_many(records)
        process, base = ours(work, {**env, "IOT_MLOPS_STORE_URL": url}, workers, "ours_postgres.log")
        try:
            result = spawn_worker(__file__, "load", "feedback", {"mode": "burst", "url": base, "ids": ids,
                                                                  "headers": {"X-API-Key": KEY}, "connections": connections}, work)
        finally:
            stop_process_group(process)
        with engine_for(url).connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one()
        engine_for(url).dispose()
        return result, int(stored)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--case-file", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--feedback", type=int, default=10_000)
    parser.add_argument("--feedback-connections", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder (models, logs, stores).")
    args = parser.parse_args()
    if args.worker:
        run_load(args.case_file)
        return 0
    if args.quick:
        args.duration, args.feedback = 5.0, 2000
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    try:
        return run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    print(f"setting up in {work} ...", flush=True)
    setup_start = time.perf_counter()
    prepared = setup(work)
    env = prepared["env"]
    print(f"setup {time.perf_counter() - setup_start:.1f} s; {len(prepared['columns'])} model inputs", flush=True)
    load = {"mode": "closed", "clients": args.clients, "warmup": args.warmup, "duration": args.duration, "host": "127.0.0.1"}

    with postgres_database() as url:  # several workers write predictions: Postgres, as `serve --workers N` requires
        process, base = ours(work, {**env, "IOT_MLOPS_STORE_URL": url}, args.workers, "ours_predictions.log")
        try:
            paths = [f"/api/predictions/water_heater/{device}/component_failure" for device in DEVICES]
            ours_result = spawn_worker(__file__, "load", "ours", {**load, "method": "GET", "headers": {"X-API-Key": KEY},
                                                                  "port": _port(base), "paths": paths}, work)
        finally:
            stop_process_group(process)
    process, base = mlflow_serve(work, env, args.workers)
    try:
        body = {"dataframe_split": {"columns": prepared["columns"], "data": [prepared["row"]]}}
        mlflow_result = spawn_worker(__file__, "load", "mlflow", {**load, "method": "POST", "body": body,
                                                                  "port": _port(base), "paths": ["/invocations"]}, work)
    finally:
        stop_process_group(process)
    feedback_result, stored = feedback_phase(work, env, args.workers, args.feedback, args.feedback_connections)

    rows = [("ours: GET prediction (explained, recorded, shadow)", ours_result),
            ("mlflow models serve: POST /invocations", mlflow_result),
            (f"ours: {args.feedback} feedback POSTs at once (Postgres)", feedback_result)]
    print(f"\n{args.clients} concurrent clients, {args.workers} server workers, {os.cpu_count()} CPUs, "
          f"{args.duration:.0f} s measured per side after {args.warmup:.0f} s warm-up\n")
    print(f"{'case':<56} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses")
    for label, r in rows:
        lat = r["latencies_ms"]
        print(f"{label:<56} {r['requests']:>9} {r['rps']:>8.0f} {lat['p50']:>8.1f} {lat['p95']:>8.1f} {lat['p99']:>8.1f}  {r['statuses']}")
    created = feedback_result["statuses"].get("201", 0)
    lost = args.feedback - stored
    ratio = ours_result["rps"] / mlflow_result["rps"] if mlflow_result["rps"] else float("inf")
    print(f"\nfeedback: {created} answered 201, {stored} rows stored, lost {lost}")
    print(f"targets: p99 <= 20 ms: {ours_result['latencies_ms']['p99']:.1f} ms ({'met' if ours_result['latencies_ms']['p99'] <= 20 else 'MISSED'}); "
          f">= 3x mlflow serve: {ratio:.2f}x ({'met' if ratio >= 3 else 'MISSED'}); 0 lost: {'met' if lost == 0 and created == args.feedback else 'MISSED'}")
    print(f"throughput_vs_mlflow_serve: {ratio:.2f}")
    ok = set(ours_result["statuses"]) == {"200"} and set(mlflow_result["statuses"]) == {"200"} and lost == 0 and stored == args.feedback
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
