"""Production mode end to end: dagster-daemon and the webserver on a fresh Postgres database, a sensor turned on
through GraphQL, the condition produced, and the retraining run requested, queued and completed by the daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from iot_mlops.deploy.doctor import run_checks
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.registry.mlflow_service import ModelRegistry
from iot_mlops.settings import psycopg2_url
from iot_mlops_tests.conftest import postgres_databases
from iot_mlops_tests.fleet import DAYS, RANGE_END, RANGE_START, Fleet, garbled_day, stamp

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # dagster-daemon and the webserver on Postgres

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "deploy" / "workspace.yaml"
LOCATION, REPOSITORY = "iot_mlops", "__repository__"
FLEET, SENSOR = "tiny", "tiny_data_quality_sensor"
STARTUP_SECONDS, RUN_SECONDS, STOP_SECONDS = 150, 180, 30
INGEST = ("devices", "telemetry", "events", "data_quality", "features", "labels")

START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""
LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""




def write_fleet(root: Path, lake: Path, landing: Path) -> Fleet:
    """The tiny fleet with a 6 h horizon, failures of both components every day, and ERROR data quality on the
    last two days: the data-quality sensor fires, and the retraining has failures to learn from."""
    fleet = Fleet(root, lake, landing)
    fleet.spec["target"] = {"horizon": "6h"}
    fleet.spec["training"] = {"algorithm": "logistic_regression"}  # the run is about the daemon, not the model
    fleet.write_profile()
    fleet.write_clean()
    for i, day in enumerate(DAYS):
        fleet.write_events(day, "failure", [("d1", stamp(day, 8), "impeller"), ("d2", stamp(day, 14), "seal"),
                                            ("d3", stamp(day, 20), "seal" if i % 2 else "impeller")])
    for day in DAYS[-2:]:
        fleet.write("telemetry", garbled_day(day), day)
    return fleet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


@dataclass
class Deployment:
    home: Path
    port: int
    store_url: str
    logs: Path
    processes: dict[str, subprocess.Popen]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:])
                         for f in sorted(self.logs.glob("*.log")))

    def alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}\n{self.log_tail()}"

    def wait_until_loaded(self) -> None:
        """Until the webserver answers and its code location is loaded (fails at once on a load error)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            self.alive()
            try:
                entries = self.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                entries = []
            for entry in entries:
                loaded = entry["locationOrLoadError"] or {}
                assert loaded.get("__typename") != "PythonError", loaded.get("message")
                if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" and loaded:
                    return
            time.sleep(2)
        pytest.fail(f"the webserver did not load {LOCATION} within {STARTUP_SECONDS} s\n{self.log_tail()}")


def tool(name: str) -> str:
    """A console script of this Python environment (not whatever is first on PATH)."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is not installed beside {sys.executable}: pip install dagster-webserver dagster-postgres"
    return str(path)


def start(name: str, args: list[str], env: dict, cwd: Path, logs: Path) -> subprocess.Popen:
    """A process in a session of its own, so that it and every process it starts can be stopped as one group."""
    log = (logs / f"{name}.log").open("w")
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:  # the whole group has exited meanwhile
        pass


def stop(processes: dict[str, subprocess.Popen]) -> dict[str, list[int]]:
    """SIGTERM every group, SIGKILL what is left after STOP_SECONDS; the processes still alive per group (none)."""
    for process in processes.values():
        signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and any(group_members(p.pid) for p in processes.values()):
        for process in processes.values():
            process.poll()  # reaps our direct children, so that they do not linger as zombies
        time.sleep(0.5)
    for process in processes.values():
        if group_members(process.pid):
            signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)
    deadline = time.monotonic() + 5  # grandchildren killed by SIGKILL are reaped by init
    while time.monotonic() < deadline and any(group_members(p.pid) for p in processes.values()):
        time.sleep(0.2)
    return {name: group_members(p.pid) for name, p in processes.items()}


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """Dagster on a fresh database, the operational store on another, MLflow in tmp; daemon and webserver running."""
    with postgres_databases("dagster", "store") as db:
        home = Path(os.environ["DAGSTER_HOME"])
        shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        fleet = write_fleet(tmp_path / "fleet", tmp_path / "data" / "lake", tmp_path / "data" / "landing")
        env = {
            "DAGSTER_PG_URL": psycopg2_url(db["dagster"]), "IOT_MLOPS_DAGSTER_DIR": str(tmp_path / "dagster_files"),
            "IOT_MLOPS_PROFILES_DIR": str(fleet.profile_dir), "IOT_MLOPS_STORE_URL": db["store"],
            "IOT_MLOPS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
            "IOT_MLOPS_MLFLOW_ARTIFACTS_DIR": str(tmp_path / "mlflow" / "artifacts"),
            "IOT_MLOPS_SENSOR_INTERVAL_SECONDS": "5",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        logs = tmp_path / "logs"
        logs.mkdir()
        port = free_port()
        processes = {}
        try:
            processes["daemon"] = start("daemon", [tool("dagster-daemon"), "run", "-w", str(WORKSPACE)], dict(os.environ), tmp_path, logs)
            processes["webserver"] = start("webserver", [tool("dagster-webserver"), "-w", str(WORKSPACE), "-h", "127.0.0.1",
                                                         "-p", str(port)], dict(os.environ), tmp_path, logs)
            yield Deployment(home, port, db["store"], logs, processes)
        finally:
            left = stop(processes)
        assert not any(left.values()), f"processes left running: {left}"


def test_daemon_runs_the_retraining_a_sensor_requests(deployment: Deployment):
    deployment.wait_until_loaded()
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": SENSOR}
    started = deployment.graphql(START_SENSOR, {"selector": selector})["startSensor"]
    assert started == {"__typename": "Sensor", "sensorState": {"status": "RUNNING"}}, started

    from iot_mlops.definitions import build_definitions

    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        # The condition: the days ingested, checked and featurized on the production instance.
        ingest = build_definitions().resolve_job_def(f"{FLEET}_daily").execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey([FLEET, t]) for t in INGEST],
            tags={RANGE_START: DAYS[0].isoformat(), RANGE_END: DAYS[-1].isoformat()}, raise_on_error=False)
        assert ingest.success

        run = wait_for_retraining(instance, deployment)
        assert run.status == dg.DagsterRunStatus.SUCCESS, (f"retraining run {run.run_id} ended {run.status}\n"
                                                            f"{run_errors(instance, run.run_id)}\n{deployment.log_tail()}")
        assert run.tags["dagster/sensor_name"] == SENSOR and run.tags["iot_mlops/trigger"] == "data_quality_sensor"
        assert run.tags["iot_mlops/retrain_fleet"] == FLEET
        # Queued by the coordinator, then launched by the daemon: nothing else dequeues runs.
        assert instance.all_logs(run.run_id, of_type={dg.DagsterEventType.RUN_ENQUEUED}), "the run was not queued"
        materialized = {e.dagster_event.asset_key.path[-1] for e in instance.all_logs(
            run.run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION})}
        assert materialized == {"training_dataset", "failure_model", "champion_gate"}

        # The decision log (on Postgres) links the sensor's trigger to the run and to the gate's decision.
        log = DecisionLog(psycopg2_url(deployment.store_url))
        [trigger] = log.list(fleet=FLEET, actions={"retrain_triggered"})
        assert trigger.actor == "data_quality_sensor" and run.tags["iot_mlops/decision_id"] == str(trigger.id)
        assert trigger.details["figures"]["consecutive_error_days"] == 2
        assert trigger.details["run_key"] == f"data_quality_sensor:quality:{DAYS[-2]}"
        [gate] = log.list(fleet=FLEET, actions={"promoted", "rejected"})
        assert gate.run_id == run.run_id and gate.details["trigger_decision_id"] == str(trigger.id)
        assert [v.version for v in ModelRegistry.from_settings().versions(f"{FLEET}_component_failure")] == ["1"]

        # The doctor sees the running deployment: every check passes, the daemon beats.
        checks = {c.name: c for c in run_checks()}
        assert not [c for c in checks.values() if c.status == "FAIL"], [c.line() for c in checks.values()]
        assert checks["dagster daemon"].status == "OK", checks["dagster daemon"].line()


def run_errors(instance: dg.DagsterInstance, run_id: str) -> str:
    failures = instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE})
    return "\n".join(e.dagster_event.event_specific_data.error.to_string() if e.dagster_event.step_failure_data
                     else e.message for e in failures)


def wait_for_retraining(instance: dg.DagsterInstance, deployment: Deployment) -> dg.DagsterRun:
    """The one retraining run, once it has finished (bounded by RUN_SECONDS)."""
    deadline = time.monotonic() + RUN_SECONDS
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    while time.monotonic() < deadline:
        deployment.alive()
        runs = instance.get_runs(dg.RunsFilter(job_name=f"{FLEET}_retraining"))
        assert len(runs) <= 1, [r.run_id for r in runs]
        if runs and runs[0].status in finished:
            return runs[0]
        time.sleep(2)
    runs = instance.get_runs(dg.RunsFilter(job_name=f"{FLEET}_retraining"))
    state = f"run {runs[0].run_id} is {runs[0].status}" if runs else "no run was requested"
    pytest.fail(f"no finished retraining run within {RUN_SECONDS} s ({state})\n{deployment.log_tail()}")
