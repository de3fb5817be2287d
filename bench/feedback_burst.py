#!/usr/bin/env python
"""Benchmark: 10,000 feedback POSTs issued at once to the prediction service on Postgres; none may be lost.

Run from the repository root (needs Postgres, IOT_MLOPS_BENCH_PG):

    python bench/feedback_burst.py            # 10,000 posts over 500 connections
    python bench/feedback_burst.py --tiny     # 1,000 posts (CI)

Setup as bench/serving.py (champion, challenger, online features), then a fresh Postgres database holding one
stored prediction per post. `iot-mlops serve` (2 workers) answers `POST /api/predictions/{id}/feedback`, each a
committed row; the posts are issued all at once from a separate process (aiohttp, at most 500 open connections, no
retries). Checked: every answer is 201 and the feedback table holds exactly one row per post. No peer races here:
the bench measures that a burst is absorbed whole, and how fast.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import finish, machine_line, parser, run_worker, spawn, table, workdir  # noqa: E402
from serving import COMPONENTS, DEVICES, KEY, NAME, postgres_database, server, setup  # noqa: E402

SIDES = ["ours"]
CONNECTIONS = 500


async def _burst(case: dict) -> dict:
    import aiohttp
    import numpy as np

    latencies, statuses = [], Counter()
    body = json.dumps({"type": "correct", "rating": 4, "source": "app", "comment": "benchmark"}).encode()
    headers = {"X-API-Key": KEY, "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def post(pid: str):
            t0 = time.perf_counter()
            try:
                async with session.post(f"http://127.0.0.1:{case['port']}/api/predictions/{pid}/feedback", data=body,
                                        headers=headers) as r:
                    await r.read()
                    statuses[r.status] += 1
            except aiohttp.ClientError as error:
                statuses[type(error).__name__] += 1
            latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(post(pid) for pid in case["ids"]))
        elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {"rps": len(latencies) / elapsed, "elapsed": elapsed, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "statuses": {str(k): v for k, v in statuses.items()}}


def burst(case: dict) -> dict:
    import uvloop

    return uvloop.run(_burst(case))


def run(args, work: Path) -> int:
    import sqlalchemy as sa

    from iot_mlops.opstore.engine import engine_for
    from iot_mlops.opstore.predictions import PredictionLog
    from iot_mlops.opstore.schema import feedback

    print(machine_line("feedback_burst", "fastapi", "uvicorn", "sqlalchemy", "psycopg2-binary"), flush=True)
    posts = 1000 if args.tiny else 10_000
    prepared = setup(work)
    with postgres_database() as url:
        now = datetime.now(UTC)
        ids = PredictionLog(url).record_many([dict(fleet="water_heaters", device_id=DEVICES[i % len(DEVICES)], ts=now,
                                                   model_name=NAME, model_version="1", predicted_component="none",
                                                   probabilities={c: 0.1 for c in COMPONENTS}) for i in range(posts)])
        with server("ours", {**prepared["env"], "IOT_MLOPS_STORE_URL": url}, work) as port:
            r = spawn(__file__, "ours", {"port": port, "ids": ids}, work)
        engine = engine_for(url)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one()
        engine.dispose()
    print()
    table(["side", "posts", "connections", "seconds", "posts/s", "p50 ms", "p99 ms", "answered 201", "rows stored"],
          [["ours", posts, CONNECTIONS, r["elapsed"], round(r["rps"]), r["p50"], r["p99"], r["statuses"].get("201", 0), stored]])
    print()
    problems = [f"answers {r['statuses']}, expected {posts} x 201"] if r["statuses"] != {"201": posts} else []
    problems += [f"{stored} feedback rows stored for {posts} posts"] if stored != posts else []
    return finish(problems, {"feedback_posts_per_s": r["rps"]})


def main() -> int:
    args = parser(__doc__, SIDES).parse_args()
    if args.worker:
        run_worker({"ours": burst}, args.worker, args.case_file)
        return 0
    with workdir(args, "feedback") as work:
        return run(args, work)


if __name__ == "__main__":
    sys.exit(main())
