"""A backfill launched as the UI does, run by the Dagster daemon on two dagster-celery workers over the local RabbitMQ,
equals one in-process run."""

from __future__ import annotations

import json
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
from itertools import pairwise
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from kombu import Connection

from iot_mlops.celery_worker import app as worker_app
from iot_mlops.settings import CelerySettings
from iot_mlops_tests.fleet import RANGE_END, RANGE_START, START, Fleet, stamp

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # RabbitMQ, two workers and a daemon

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = [START + timedelta(days=i) for i in range(30)]
PER_RUN = 15  # 2+ runs per asset; rel's second feature run waits for a daemon tick (every 30 s) after its first
BROKER = ("127.0.0.1", 5672)
BACKFILL_TAG = "dagster/backfill"
WORKER_METADATA = "Celery worker"  # what dagster-celery's engine event records for each step
# The mutation the UI's "Materialize" dialog sends for a partition range of selected assets.
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


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
    """Two workers and the daemon on a shared Dagster home, code (profiles) and lake, and a queue of this module only."""

    env: dict[str, str]
    home: Path
    logs: Path
    names: tuple[str, ...]
    procs: list[subprocess.Popen]

    @property
    def settings(self) -> CelerySettings:
        return CelerySettings(queue=self.env["IOT_MLOPS_CELERY_QUEUE"])

    def spawn(self, name: str, command: list[str]) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.procs.append(subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def start(self) -> None:
        """The workers, as the README starts them."""
        for name in self.names:
            self.spawn(name, [str(BIN / "celery"), "-A", "iot_mlops.celery_worker", "worker", "-Q", self.settings.queue,
                              "-n", f"{name}@%h", "-c", "1", "--prefetch-multiplier=1", "-l", "INFO",
                              "--without-gossip", "--without-mingle"])

    def wait_for_workers(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.live_workers()) == len(self.names):
                return
            dead = [p.args for p in self.procs if p.poll() is not None]
            assert not dead, f"a process exited at start: {dead}\n{self.log_tails()}"
        pytest.fail(f"workers not consuming {self.settings.queue} after {timeout:.0f} s\n{self.log_tails()}")

    def live_workers(self) -> list[str]:
        with worker_app.connection_for_write(self.settings.broker) as conn:
            queues = worker_app.control.inspect(timeout=1.0, connection=conn).active_queues() or {}
        return sorted(w for w, qs in queues.items() if any(q["name"] == self.settings.queue for q in qs))

    def start_daemon(self) -> None:
        self.spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-m", "iot_mlops.definitions"])

    def launch_backfill(self, ranges: dict[dg.AssetKey, tuple[str, str] | None]) -> str:
        """`launchPartitionBackfill` through Dagster's GraphQL CLI, as the UI sends it; the backfill's id."""
        params = {"partitionsByAssets": [{"assetKey": {"path": k.path}, "partitions": span and {"range": dict(zip(("start", "end"), span, strict=True))}}
                                         for k, span in ranges.items()]}
        out = subprocess.run([str(BIN / "dagster-graphql"), "-m", "iot_mlops.definitions", "-t", LAUNCH,
                              "-v", json.dumps({"params": params})], env=self.env, cwd=ROOT, capture_output=True,
                             text=True, timeout=120, check=False)
        line = next((x for x in out.stdout.splitlines() if x.startswith('{"data"')), None)
        assert line, f"no GraphQL response\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        result = json.loads(line)["data"]["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", (result, out.stderr[-3000:])
        return result["backfillId"]

    def wait(self, backfill_id: str, partitions: dict[dg.AssetKey, int], timeout: float) -> list[dg.RunRecord]:
        """The backfill's runs once every asset has its partitions and no run is in flight, or once a run failed.

        (The daemon marks the backfill done only at its next tick, up to 30 s later.)"""
        deadline = time.monotonic() + timeout
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            while time.monotonic() < deadline:
                records = instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
                if any(r.dagster_run.is_failure_or_canceled for r in records):
                    return records
                if all(r.dagster_run.is_finished for r in records) and all(
                        len(instance.get_materialized_partitions(key)) == n for key, n in partitions.items()):
                    return records
                assert all(p.poll() is None for p in self.procs), f"a process exited\n{self.log_tails()}"
                time.sleep(1)
        pytest.fail(f"backfill not done after {timeout:.0f} s\n{self.log_tails()}")

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log")))

    def stop(self) -> None:
        """Kill the process groups (daemon, workers and their children) and drop the queue."""
        for proc in self.procs:
            _kill_group(proc)
        with Connection(self.settings.broker) as conn:
            channel = conn.channel()
            channel.queue_delete(self.settings.queue)  # purges it too; a missing queue is no error in RabbitMQ
            channel.exchange_delete(self.settings.queue)


def _fleet(root: Path, name: str, relative: dict | None = None) -> Fleet:
    fleet = Fleet(root, root / "lake", root / "landing")
    fleet.spec["name"] = name
    fleet.spec["partitions"]["end"] = DAYS[-1].isoformat()
    if relative:
        fleet.spec["features"]["relative"] = relative
    return fleet


def _instance_yaml() -> str:
    """The production instance's run queue and limits (deploy/dagster.yaml) on the default SQLite storage."""
    deployed = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    return yaml.safe_dump({k: deployed[k] for k in ("concurrency", "telemetry", "python_logs")})


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Fleet, Fleet]]:
    """Fleets `tiny` and `rel` (device baselines: features read earlier days) over 30 days, two workers, the daemon."""
    _require_rabbitmq()
    root = tmp_path_factory.mktemp("celery")
    tiny, rel = _fleet(root, "tiny"), _fleet(root, "rel", {"baseline": "6h", "cohort": "model"})
    for fleet in (tiny, rel):
        fleet.write_profile()
    tiny.write_clean(DAYS)  # both read the same source folder
    for first in DAYS[PER_RUN::PER_RUN]:  # windows and error counts reach across runs
        before = first - timedelta(days=1)
        tiny.write_events(before, "error", [("d1", stamp(before, 22, 30), "E1"), ("d3", stamp(before, 23), "E2")])
        tiny.write_events(before, "maintenance", [("d2", stamp(before, 23, 30), "seal")])

    home, logs = root / "dagster_home", root / "logs"
    home.mkdir()
    logs.mkdir()
    (home / "dagster.yaml").write_text(_instance_yaml())
    token = uuid.uuid4().hex[:10]
    env = {**os.environ, "DAGSTER_HOME": str(home), "IOT_MLOPS_PROFILES_DIR": str(tiny.profile_dir),
           "IOT_MLOPS_DATA_DIR": str(root / "data"), "IOT_MLOPS_LAKE_DIR": str(root / "lake"),
           "IOT_MLOPS_LANDING_DIR": str(root / "landing"), "IOT_MLOPS_CELERY_QUEUE": f"iot_mlops_test_{token}",
           "IOT_MLOPS_EXECUTOR": "celery", "IOT_MLOPS_BACKFILL_PARTITIONS_PER_RUN": str(PER_RUN),
           "PYTHONUNBUFFERED": "1"}
    # Node names are global on the broker, so they are unique per test run too.
    pool = Deployment(env, home, logs, (f"w1-{token}", f"w2-{token}"), [])
    try:
        pool.start()  # the test waits for them once it has launched the backfill
        yield pool, tiny, rel
    finally:
        pool.stop()
    assert not any(_group_alive(p.pid) for p in pool.procs), "a process survived"
    with Connection(pool.settings.broker) as conn, pytest.raises(Exception, match="NOT_FOUND"):
        conn.channel().queue_declare(pool.settings.queue, passive=True)


def _features(lake: Path, fleet: str) -> pd.DataFrame:
    files = sorted((lake / fleet / "features").glob("date=*/data.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]).sort_values(["device_id", "ts"]).reset_index(drop=True)


def _step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Which celery worker executed each step of a run, from dagster-celery's engine events."""
    out = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        worker = data.metadata.get(WORKER_METADATA) if data else None
        if worker is not None and record.step_key:
            out[record.step_key] = worker.value.split("@")[0]
    return out


def _single_run(fleet: Fleet, lake: Path, days: list) -> Fleet:
    reference = Fleet(fleet.root, lake, fleet.landing_root)
    reference.spec = fleet.spec
    keys = [dg.AssetKey([fleet.name, t]) for t in ("devices", "telemetry", "events", "features")]
    result = dg.materialize(reference.assets(), selection=keys, resources=reference.resources(), instance=dg.DagsterInstance.ephemeral(),
                            tags={RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()})
    assert result.success
    return reference


def test_ui_backfill_of_30_days_runs_on_both_workers_and_equals_one_process(deployment, tmp_path):
    pool, tiny, rel = deployment
    days = {tiny: DAYS, rel: DAYS}
    ranges = {dg.AssetKey([f.name, t]): None if t == "devices" else (str(d[0]), str(d[-1]))
              for f, d in days.items() for t in ("devices", "telemetry", "events", "features")}
    started = time.monotonic()
    backfill_id = pool.launch_backfill(ranges)
    pool.wait_for_workers()
    pool.start_daemon()  # it takes the waiting backfill at its first tick
    records = pool.wait(backfill_id, {k: len(days[f]) for f in days for k in ranges if k.path == [f.name, "features"]},
                        timeout=300)
    seconds = time.monotonic() - started
    assert records and all(r.dagster_run.is_success for r in records), f"failed runs\n{pool.log_tails()}"

    with dg.DagsterInstance.from_config(str(pool.home)) as instance:
        by_asset: dict[dg.AssetKey, list[dg.RunRecord]] = {}
        workers: dict[str, set[str]] = {}
        for record in records:
            for key in record.dagster_run.asset_selection or ():
                by_asset.setdefault(key, []).append(record)
            for step, worker in _step_workers(instance, record.dagster_run.run_id).items():
                workers.setdefault(step, set()).add(worker)
        for fleet, fleet_days in days.items():  # multi_run(15): runs of at most 15 days, together covering the range
            for table in ("telemetry", "events", "features"):
                spans = sorted((date.fromisoformat(r.dagster_run.tags[RANGE_START]), date.fromisoformat(r.dagster_run.tags[RANGE_END]))
                               for r in by_asset[dg.AssetKey([fleet.name, table])])
                assert len(spans) > 1 and all((end - start).days < PER_RUN for start, end in spans), spans
                assert [d for start, end in spans for d in fleet_days if start <= d <= end] == fleet_days, spans
            done = instance.fetch_materializations(dg.AssetKey([fleet.name, "features"]), limit=100).records
            assert sorted(r.event_log_entry.dagster_event.partition for r in done) == [d.isoformat() for d in fleet_days]
        assert workers["tiny__features"] | workers["rel__features"] == set(pool.names), workers
        assert workers["tiny__telemetry"] | workers["tiny__events"] == set(pool.names), workers
        # rel's feature runs read the days before them: each starts after the one before it ended, in day order.
        rel_runs = sorted(by_asset[dg.AssetKey(["rel", "features"])], key=lambda r: r.start_time)
        starts = [r.dagster_run.tags[RANGE_START] for r in rel_runs]
        assert len(starts) > 1 and starts == sorted(starts), starts
        assert all(a.end_time <= b.start_time for a, b in pairwise(rel_runs))

    started_single = time.monotonic()
    references = {f.name: _single_run(f, tmp_path / "reference_lake", d) for f, d in days.items()}
    single_seconds = time.monotonic() - started_single
    for fleet, fleet_days in days.items():
        distributed, single = _features(fleet.lake_root, fleet.name), _features(references[fleet.name].lake_root, fleet.name)
        assert set(single["ts"].dt.date) == set(fleet_days)
        pd.testing.assert_frame_equal(distributed, single)
        online = [pd.read_parquet(f.file("online_features")).sort_values("device_id", ignore_index=True)
                  for f in (fleet, references[fleet.name])]
        pd.testing.assert_frame_equal(*online)
    assert _features(tiny.lake_root, "tiny")["errors_e1_6h"].sum() > 0  # the boundary events reached the next run
    assert (_features(rel.lake_root, "rel").filter(like="_z_").abs().sum() > 0).any()  # baselines reached back
    print(f"\n{len(DAYS)} days of 2 fleets: backfill through the daemon {seconds:.1f} s ({len(records)} runs), "
          f"in-process runs {single_seconds:.1f} s")
