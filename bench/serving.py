#!/usr/bin/env python
"""Benchmark: one device's prediction over HTTP: our service against `mlflow models serve` and a FastAPI + sklearn app.

Run from the repository root (loopback only, nothing downloaded; needs Postgres, IOT_MLOPS_BENCH_PG):

    python bench/serving.py            # 3 rounds (--runs); per side and round: 1 and 50 clients, 10 s measured each
    python bench/serving.py --tiny     # 1 round, 2 s windows, the mlflow sides at 50 clients only (CI)

Setup, in a temporary folder: a water-heater champion as the profile trains it (logistic regression over 120
features, the project's pipeline with per-component fixed thresholds) on synthetic rows, saved with skops and
registered in MLflow (SQLite) as `water_heaters_component_failure@champion`, a challenger, and online features for
200 devices. Every side serves that champion with 2 uvicorn workers (uvloop, httptools, no access log); the servers
run one after the other, each started afresh in every round (sides in turn, so a drift in the machine hits all).

- ours: `iot-mlops serve` (operational store on Postgres), `GET /api/predictions/water_heater/{device}/component_failure`
  with an API key: feature lookup, champion + shadow challenger, an explanation (top features), the prediction and
  its shadow recorded in Postgres (committed before the answer), a validated response. Concurrent requests are
  scored together (micro-batches). One listening socket per worker (SO_REUSEPORT); the other sides share one.
- mlflow_serve_1: `mlflow models serve --env-manager local`, `POST /invocations` with the device's row as a 1-row
  `dataframe_split`: the pyfunc's `predict`, i.e. per-component alerts (0/1), no probabilities; the client sends the
  features (no lookup), nothing recorded, no key.
- mlflow_serve_25: the same with 25 rows per request; predictions/s counts rows.
- fastapi_sklearn: bench/serving_peer.py under `uvicorn --workers 2`: a dict device -> feature row read once,
  `predict_proba` of the champion, alerts by its thresholds; no store write, no challenger, no explanation, no key,
  no reload of models or features.

The load generator is its own process (raw keep-alive HTTP/1.1 on uvloop, microseconds of client CPU per request):
`clients` connections in a closed loop, each cycling over the 200 devices; latency from just before a request is
sent to the end of its response, requests/s over the measured window; the median over rounds is reported. It shares
the machine's cores with the servers, alike for every side. Checked: for every device, ours' probabilities equal the
peer's rounded to the 6 decimals ours returns, and the alerts of ours, the peer and both mlflow sides are identical;
every response is 200. A mismatch exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, finish, machine_line, parser, run_worker, spawn, table, workdir  # noqa: E402

NAME = "water_heaters_component_failure"
COMPONENTS = ["heating_element", "tank", "thermostat", "seal"]
DEVICES = [f"WH-{1001 + i}" for i in range(200)]
KEY = "bench-key"
WORKERS = 2
CLIENTS = (1, 50)
PG = os.environ.get("IOT_MLOPS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
SIDES = ["ours", "mlflow_serve_1", "mlflow_serve_25", "fastapi_sklearn"]
SERVERS = {"ours": ["ours"], "mlflow": ["mlflow_serve_1", "mlflow_serve_25"], "fastapi_sklearn": ["fastapi_sklearn"]}
ROWS_PER_REQUEST = {"mlflow_serve_25": 25}


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
    """Champion, challenger and online features under `work`; returns the server environment and the feature rows."""
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
           "IOT_MLOPS_MLFLOW_ARTIFACTS_DIR": str(work / "artifacts"), "IOT_MLOPS_API_KEYS": f"{hash_key(KEY)}:admin:bench",
           "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "UVICORN_ACCESS_LOG": "false", "UVICORN_LOG_LEVEL": "info"}
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
    features = Lake(work / "lake").table_file("water_heaters", "online_features")
    atomic_write(features, lambda tmp: online.to_parquet(tmp, index=False))
    env.update(PEER_MODEL_URI=f"models:/{NAME}@champion", PEER_FEATURES=str(features), PEER_COMPONENTS=",".join(COMPONENTS))
    columns = list(X.columns)
    return {"env": env, "columns": columns, "rows": [[v.item() if hasattr(v, "item") else v for v in row]
                                                     for row in online[columns].itertuples(index=False)]}


# --- servers ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(name: str, port: int) -> list[str]:
    if name == "ours":
        code = ("from iot_mlops.serving.cli import serve; "
                f"serve(host='127.0.0.1', port={port}, workers={WORKERS}, log_level='info', access_log=False)")
        return [sys.executable, "-c", code]
    if name == "fastapi_sklearn":
        return [sys.executable, "-m", "uvicorn", "serving_peer:app", "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(WORKERS)]
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "-w", str(WORKERS)]


@contextmanager
def server(name: str, env: dict, work: Path, timeout: float = 300):
    """A server, once every worker has started (each logs it); stopped with its process group afterwards."""
    from iot_mlops.processes import stop_process_group

    port, log = free_port(), work / f"server.{name}.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(server_command(name, port), env={**os.environ, **env}, stdout=handle,
                                   stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while log.read_text().count("Application startup complete") < WORKERS:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} server did not start (exit {process.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        stop_process_group(process)


def requests_for(side: str, port: int, prepared: dict) -> list[str]:
    """The raw HTTP requests a client cycles through (as text, to pass to the load process)."""
    host = f"Host: 127.0.0.1:{port}\r\n"
    if side == "ours":
        return [f"GET /api/predictions/water_heater/{d}/component_failure HTTP/1.1\r\n{host}X-API-Key: {KEY}\r\n\r\n"
                for d in DEVICES]
    if side == "fastapi_sklearn":
        return [f"GET /predict/{d} HTTP/1.1\r\n{host}\r\n" for d in DEVICES]
    out = []
    for body in invocation_bodies(prepared, ROWS_PER_REQUEST.get(side, 1)):
        out.append(f"POST /invocations HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
                   f"Content-Length: {len(body.encode())}\r\n\r\n{body}")
    return out


def invocation_bodies(prepared: dict, rows: int) -> list[str]:
    rows_ = prepared["rows"]
    return [json.dumps({"dataframe_split": {"columns": prepared["columns"], "data": rows_[i:i + rows]}})
            for i in range(0, len(rows_), rows)]


def answers(side: str, port: int, prepared: dict) -> dict[str, dict]:
    """Per device: the side's probabilities (when it returns them) and sorted alerts, asked over 4 connections."""
    from concurrent.futures import ThreadPoolExecutor

    rows = ROWS_PER_REQUEST.get(side, 1)
    bodies = invocation_bodies(prepared, rows)

    def ask(i: int) -> list[tuple[str, dict]]:
        if side == "ours":
            path, body, headers = f"/api/predictions/water_heater/{DEVICES[i]}/component_failure", None, {"X-API-Key": KEY}
        elif side == "fastapi_sklearn":
            path, body, headers = f"/predict/{DEVICES[i]}", None, {}
        else:
            path, body, headers = "/invocations", bodies[i // rows].encode(), {"Content-Type": "application/json"}
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers), timeout=60) as response:
            r = json.loads(response.read())
        if body is None:
            return [(DEVICES[i], {"probabilities": r["probabilities"], "alerts": sorted(r["alerts"])})]
        return [(d, {"alerts": sorted(c for c, flag in zip(COMPONENTS, flags) if flag)})
                for d, flags in zip(DEVICES[i:i + rows], r["predictions"])]

    with ThreadPoolExecutor(4) as pool:
        return dict(pair for pairs in pool.map(ask, range(0, len(DEVICES), rows)) for pair in pairs)


def answer_problems(seen: dict[str, dict[str, dict]]) -> list[str]:
    """Ours against the peer (probabilities at ours' 6 decimals, alerts), every side's alerts against the peer's."""
    problems, peer = [], seen["fastapi_sklearn"]
    for side, got in seen.items():
        if sorted(got) != sorted(peer):
            problems.append(f"{side}: answered {len(got)} devices, the peer {len(peer)}")
            continue
        bad = [d for d in DEVICES if got[d]["alerts"] != peer[d]["alerts"]]
        if side == "ours":
            bad += [d for d in DEVICES if got[d]["probabilities"] != {c: round(p, 6) for c, p in peer[d]["probabilities"].items()}]
        if bad:
            problems.append(f"{side}: {len(bad)} devices differ from fastapi_sklearn, e.g. {bad[0]}: {got[bad[0]]} vs {peer[bad[0]]}")
    return problems


# --- load generator (its own process) -----------------------------------------------------------------


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


async def closed_loop(case: dict) -> dict:
    """`clients` keep-alive connections, each sending its next request as soon as the last answer is in."""
    import numpy as np

    latencies, statuses = [], Counter()
    requests = [r.encode() for r in case["requests"]]
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    measure, end = start + case["warmup"], start + case["warmup"] + case["duration"]

    async def client(offset: int):
        transport, exchange = await loop.create_connection(_Exchange, "127.0.0.1", case["port"])
        n = offset * 7
        while (t0 := time.perf_counter()) < end:
            status = await exchange.send(requests[n % len(requests)])
            n += 1
            if t0 >= measure:
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
        transport.close()

    await asyncio.gather(*(client(i) for i in range(case["clients"])))
    ms = np.asarray(latencies or [float("nan")]) * 1000
    return {"rps": len(latencies) / case["duration"], "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "statuses": {str(k): v for k, v in statuses.items()}}


def load(case: dict) -> dict:
    import uvloop

    return uvloop.run(closed_loop(case))


# --- the run ------------------------------------------------------------------------------------------


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


def window(side: str, clients: int, port: int, prepared: dict, timing: tuple[float, float], work: Path) -> dict:
    """One measured window of the load process against the running server."""
    case = {"port": port, "clients": clients, "warmup": timing[0], "duration": timing[1],
            "requests": requests_for(side, port, prepared)}
    r = spawn(__file__, side, case, work)
    print(f"  {side:<16} c={clients:<3} {r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms", flush=True)
    return r


def run(args, work: Path) -> int:
    print(machine_line("serving", "fastapi", "uvicorn", "mlflow", "scikit-learn"), flush=True)
    rounds, timing = (1, (0.5, 2.0)) if args.tiny else (args.runs, (2.0, 10.0))
    started = time.perf_counter()
    prepared = setup(work)
    print(f"setup {time.perf_counter() - started:.1f} s; {len(prepared['columns'])} model inputs, {len(DEVICES)} devices, "
          f"{WORKERS} server workers per side; {rounds} round(s), each window {timing[1]:.0f} s measured after "
          f"{timing[0]:.1f} s warm-up", flush=True)
    results: dict[tuple[str, int], list[dict]] = {}
    seen, problems = {}, []
    with postgres_database() as url:  # several workers write predictions: Postgres, as `serve --workers N` requires
        env = {**prepared["env"], "IOT_MLOPS_STORE_URL": url}
        for i in range(rounds):
            print(f"round {i + 1}/{rounds}", flush=True)
            for name, sides in SERVERS.items():
                with server(name, env, work) as port:
                    for side in sides:
                        if side not in seen:
                            seen[side] = answers(side, port, prepared)
                        # --tiny: mlflow only at 50 clients, to stay short
                        for clients in CLIENTS if not (args.tiny and name == "mlflow") else CLIENTS[-1:]:
                            results.setdefault((side, clients), []).append(window(side, clients, port, prepared, timing, work))
    problems += [f"{s} at {c} clients: statuses {r['statuses']}" for (s, c), v in results.items() for r in v
                 if set(r["statuses"]) != {"200"}]
    problems += answer_problems(seen)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in results.items()}
    print(f"\nmedian of {rounds} round(s); load average now {os.getloadavg()[0]:.1f}\n")
    table(["side", "clients", "rows/request", "requests/s", "predictions/s", "p50 ms", "p99 ms"],
          [[s, c, ROWS_PER_REQUEST.get(s, 1), round(m["rps"]), round(m["rps"] * ROWS_PER_REQUEST.get(s, 1)),
            m["p50"], m["p99"]] for (s, c), m in med.items()])
    print()
    ours50, ours1 = med[("ours", 50)], med[("ours", 1)]
    return finish(problems, {
        "throughput_vs_fastapi_sklearn": ours50["rps"] / med[("fastapi_sklearn", 50)]["rps"],
        "p99_vs_fastapi_sklearn_c1": ours1["p99"] / med[("fastapi_sklearn", 1)]["p99"],
        "throughput_vs_mlflow_serve": ours50["rps"] / med[("mlflow_serve_1", 50)]["rps"],
        "predictions_vs_mlflow_serve_25": ours50["rps"] / (med[("mlflow_serve_25", 50)]["rps"] * 25)})


def main() -> int:
    args = parser(__doc__, SIDES).parse_args()
    if args.worker:
        run_worker({side: load for side in SIDES}, args.worker, args.case_file)
        return 0
    with workdir(args, "serving") as work:
        return run(args, work)


if __name__ == "__main__":
    sys.exit(main())
