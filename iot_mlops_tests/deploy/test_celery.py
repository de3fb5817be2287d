"""Backfills run their steps on two dagster-celery workers over the local RabbitMQ, with results equal to one process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from kombu import Connection

from iot_mlops.scaling import (
    CelerySettings,
    live_workers,
    main,
    partition_ranges,
    step_workers,
    worker_command,
)
from iot_mlops_tests.fleet import RANGE_END, RANGE_START, START, Fleet, stamp

ROOT = Path(__file__).resolve().parents[2]
DAYS = [START + timedelta(days=i) for i in range(30)]
PER_RUN = 10  # 3 feature runs over 2 workers; `--per-run 1` would make 30
BROKER = ("127.0.0.1", 5672)


def _require_rabbitmq() -> None:
    try:
        socket.create_connection(BROKER, timeout=3).close()
    except OSError as error:
        pytest.fail(f"RabbitMQ is not reachable at {BROKER[0]}:{BROKER[1]} ({error}); start it with "
                    "`service rabbitmq-server start` (user guest/guest, vhost /)")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group of a process started with start_new_session."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
        for _ in range(15):  # pool children may outlive their parent by a moment
            if not _group_alive(proc.pid):
                return
            time.sleep(1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Deployment:
    """Two workers, the shared Dagster home, code (profiles) and lake, and a queue of this module only."""

    env: dict[str, str]
    home: Path
    logs: Path
    names: tuple[str, ...]
    procs: list[subprocess.Popen]

    @property
    def settings(self) -> CelerySettings:
        return CelerySettings(queue=self.env["IOT_MLOPS_CELERY_QUEUE"])

    def start(self, timeout: float = 90.0) -> None:
        for name in self.names:
            with open(self.logs / f"{name}.log", "wb") as log:
                self.procs.append(subprocess.Popen(worker_command(name, self.settings.queue), env=self.env, cwd=ROOT,
                                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(live_workers(self.settings, timeout=1.0)) == len(self.names):
                return
            dead = [p.args for p in self.procs if p.poll() is not None]
            assert not dead, f"a worker exited at start: {dead}\n{self.log_tails()}"
        pytest.fail(f"workers not consuming {self.settings.queue} after {timeout:.0f} s\n{self.log_tails()}")

    def backfill(self, fleet: str, first: date, last: date, per_run: int, timeout: float = 150.0) -> tuple[int | str, str]:
        """`python -m iot_mlops.scaling backfill` as a user runs it: (exit code, output)."""
        log_file = self.logs / f"backfill-{uuid.uuid4().hex[:6]}.log"
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "iot_mlops.scaling", "backfill", "--fleet", fleet, "--start", str(first),
                 "--end", str(last), "--per-run", str(per_run), "--max-concurrent-runs", "2"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code: int | str = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = f"timeout after {timeout:.0f} s"
            finally:
                _kill_group(proc)  # its run processes and their fork server too
        return code, log_file.read_text()

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("w*.log")))

    def stop(self) -> None:
        """Kill the workers' process groups (celery's main process and its pool child) and drop the queue."""
        for proc in self.procs:
            _kill_group(proc)
        with Connection(self.settings.broker) as conn:
            channel = conn.channel()
            channel.queue_delete(self.settings.queue)  # purges it too; a missing queue is no error in RabbitMQ
            channel.exchange_delete(self.settings.queue)


def _fleet(root: Path, lake: Path, name: str, source: str) -> Fleet:
    fleet = Fleet(root, lake, root / "landing")
    fleet.spec["name"] = name
    fleet.spec["source"]["path"] = f"../{source}"
    fleet.source = root / source
    return fleet


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Fleet, Fleet]]:
    """Fleets `tiny` (30 clean days, events on run boundaries) and `broken` (day 2 lacks a column), and two workers."""
    _require_rabbitmq()
    root = tmp_path_factory.mktemp("celery")
    tiny, broken = _fleet(root, root / "lake", "tiny", "source"), _fleet(root, root / "lake", "broken", "source_broken")
    tiny.spec["partitions"]["end"] = DAYS[-1].isoformat()
    for fleet in (tiny, broken):
        fleet.write_profile()
    tiny.write_clean(DAYS)
    for first, _ in partition_ranges(DAYS, PER_RUN)[1:]:  # windows and error counts reach across runs
        before = first - timedelta(days=1)
        tiny.write_events(before, "error", [("d1", stamp(before, 22, 30), "E1"), ("d3", stamp(before, 23), "E2")])
        tiny.write_events(before, "maintenance", [("d2", stamp(before, 23, 30), "seal")])
    broken.write_clean(DAYS[:4])
    pd.read_csv(broken.path("telemetry", DAYS[1])).drop(columns="pressure").to_csv(broken.path("telemetry", DAYS[1]), index=False)

    home, logs = root / "dagster_home", root / "logs"
    home.mkdir()
    logs.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    token = uuid.uuid4().hex[:10]
    env = {**os.environ, "DAGSTER_HOME": str(home), "IOT_MLOPS_PROFILES_DIR": str(tiny.profile_dir),
           "IOT_MLOPS_DATA_DIR": str(root / "data"), "IOT_MLOPS_LAKE_DIR": str(root / "lake"),
           "IOT_MLOPS_LANDING_DIR": str(root / "landing"), "IOT_MLOPS_CELERY_QUEUE": f"iot_mlops_test_{token}",
           "PYTHONUNBUFFERED": "1"}
    # Node names are global on the broker, so they are unique per test run too.
    pool = Deployment(env, home, logs, (f"w1-{token}", f"w2-{token}"), [])
    try:
        pool.start()
        yield pool, tiny, broken
    finally:
        pool.stop()
    assert not any(_group_alive(p.pid) for p in pool.procs), "a worker process survived"
    with Connection(pool.settings.broker) as conn, pytest.raises(Exception, match="NOT_FOUND"):
        conn.channel().queue_declare(pool.settings.queue, passive=True)


def _features(lake: Path, fleet: str) -> pd.DataFrame:
    files = sorted((lake / fleet / "features").glob("date=*/data.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]).sort_values(["device_id", "ts"]).reset_index(drop=True)


def _runs(home: Path, fleet: str) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [r for r in instance.get_runs() if r.job_name == f"{fleet}_daily_distributed"]


def test_backfill_of_30_days_runs_on_both_workers_and_equals_one_process(deployment, tmp_path):
    pool, tiny, _ = deployment
    started = time.monotonic()
    code, output = pool.backfill(tiny.name, DAYS[0], DAYS[-1], PER_RUN)
    seconds = time.monotonic() - started
    assert code == 0, f"backfill failed\n{output[-5000:]}\n{pool.log_tails()}"

    with dg.DagsterInstance.from_config(str(pool.home)) as instance:
        runs = _runs(pool.home, tiny.name)
        assert runs and all(r.is_success for r in runs)
        assert len(runs) == 1 + 2 * len(DAYS) // PER_RUN  # devices once; telemetry+events, then features, per 10 days
        by_step: dict[str, set[str]] = {}
        for run in runs:
            for step, worker in step_workers(instance, run.run_id).items():
                by_step.setdefault(step.split("__")[-1], set()).add(worker.split("@")[0])
        assert by_step["features"] == set(pool.names), by_step
        assert by_step["telemetry"] | by_step["events"] == set(pool.names), by_step
        records = instance.fetch_materializations(dg.AssetKey([tiny.name, "features"]), limit=100).records
        assert sorted(r.event_log_entry.dagster_event.partition for r in records) == [d.isoformat() for d in DAYS]

    reference = Fleet(tiny.root, tmp_path / "reference_lake", tiny.landing_root)
    started_single = time.monotonic()
    result = dg.materialize(reference.assets(), resources=reference.resources(), instance=dg.DagsterInstance.ephemeral(),
                            tags={RANGE_START: DAYS[0].isoformat(), RANGE_END: DAYS[-1].isoformat()})
    single_seconds = time.monotonic() - started_single
    assert result.success
    distributed, single = _features(tiny.lake_root, tiny.name), _features(reference.lake_root, tiny.name)
    assert set(single["ts"].dt.date) == set(DAYS)
    assert distributed["errors_e1_6h"].sum() > 0  # the boundary events reached the next run's first hours
    pd.testing.assert_frame_equal(distributed, single)
    online = [pd.read_parquet(f.file("online_features")).sort_values("device_id", ignore_index=True) for f in (tiny, reference)]
    pd.testing.assert_frame_equal(*online)
    print(f"\n{len(DAYS)} days: distributed backfill {seconds:.1f} s ({len(runs)} runs), one in-process run {single_seconds:.1f} s")


def test_failed_stage_stops_the_backfill_with_the_failed_runs_named(deployment):
    pool, _, broken = deployment
    code, output = pool.backfill(broken.name, DAYS[0], DAYS[3], per_run=2)
    assert code == 1, output[-3000:]
    runs = _runs(pool.home, broken.name)
    failed = [r for r in runs if not r.is_success]
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in failed] == [(str(DAYS[0]), str(DAYS[1]))]
    assert f"1 run(s) failed: telemetry+events {DAYS[0]}...{DAYS[1]} (run {failed[0].run_id})" in output
    assert all(dg.AssetKey([broken.name, "features"]) not in (r.asset_selection or ()) for r in runs)  # never started
    assert not (broken.lake_root / broken.name / "features").exists()
    # the other range of the same stage completed, and its partitions are in the lake
    assert broken.file("telemetry", DAYS[2]).is_file() and not broken.file("telemetry", DAYS[1]).exists()


def test_partition_ranges_cut_consecutive_days():
    assert partition_ranges(DAYS, PER_RUN) == [(DAYS[0], DAYS[9]), (DAYS[10], DAYS[19]), (DAYS[20], DAYS[29])]
    assert partition_ranges([*DAYS[5:7], *DAYS[:3]], 10) == [(DAYS[0], DAYS[2]), (DAYS[5], DAYS[6])]
    assert partition_ranges(DAYS[:3], 1) == [(d, d) for d in DAYS[:3]]
    with pytest.raises(ValueError, match="at least 1"):
        partition_ranges(DAYS, 0)


def test_backfill_without_workers_is_refused_with_a_clear_reason(monkeypatch):
    _require_rabbitmq()
    queue = f"iot_mlops_test_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("IOT_MLOPS_CELERY_QUEUE", queue)
    with pytest.raises(SystemExit, match=f"no celery worker consumes queue '{queue}'"):
        main(["backfill", "--fleet", "tiny", "--start", str(DAYS[0]), "--end", str(DAYS[1])])
