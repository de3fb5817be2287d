"""The Dagster daemon in a child process, and the sensor ticks and runs it records in the instance."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import yaml

from iot_mlops.automation.replay import Tick
from iot_mlops.automation.sensors import CONDITIONS
from iot_mlops.names import DEFINITIONS_MODULE, REASON_TAG, sensor_name
from iot_mlops.processes import stop_process_group

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
# workspace.yaml's name for the code location: ticks belong to a location's name, so the UI (which loads
# workspace.yaml) shows the daemon's ticks only when the daemon loads the definitions under the same name.
LOCATION_NAME = "iot_mlops"


class DaemonError(RuntimeError):
    """The daemon stopped, or did not tick or finish a run in time."""


def sensor_names(fleet: str) -> list[str]:
    return [sensor_name(fleet, name) for name in CONDITIONS]


def _executable() -> str:
    beside = Path(sys.executable).with_name("dagster-daemon")
    found = str(beside) if beside.is_file() else shutil.which("dagster-daemon")
    if not found:
        raise DaemonError("dagster-daemon is not installed in this environment (pip install dagster)")
    return found


@contextmanager
def running_daemon(fleet: str, log_file: Path, interval_seconds: int = 1,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` on this project's definitions, with `fleet`'s retraining sensors on; stopped on exit."""
    environment = {**os.environ, "IOT_MLOPS_SENSORS_RUNNING": fleet,
                   "IOT_MLOPS_SENSOR_INTERVAL_SECONDS": str(interval_seconds), **(env or {})}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    workspace = log_file.with_name("dagster-daemon-workspace.yaml")
    workspace.write_text(workspace_yaml(Path.cwd()))
    with log_file.open("ab") as log:
        # Its own session, so stopping it also stops the code server it spawns.
        process = subprocess.Popen([_executable(), "run", "-w", str(workspace), "--log-level", "warning"],
                                   env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        stop_process_group(process)


def workspace_yaml(working_directory: Path) -> str:
    """This project's definitions as one code location named like workspace.yaml's."""
    return yaml.safe_dump({"load_from": [{"python_module": {"module_name": DEFINITIONS_MODULE, "location_name": LOCATION_NAME,
                                                             "working_directory": str(working_directory)}}]})


def recorded_ticks(instance: dg.DagsterInstance, names: list[str], after: float | None = None) -> dict[str, list]:
    """Each named sensor's ticks stored in the instance (newest first), after `after` (epoch seconds) if given."""
    states = {s.instigator_name: s for s in instance.all_instigator_state() if s.instigator_name in names}
    return {name: list(instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after))
            for name, state in states.items()}


def _finished(tick) -> bool:
    return tick.status.value != "STARTED"


def wait_for_ticks(instance: dg.DagsterInstance, fleet: str, since: float, after: float, process: subprocess.Popen,
                   timeout: float = 900) -> list[Tick]:
    """Wait until every retraining sensor of `fleet` finished a tick after `after`, and every run those ticks
    requested (since `since`) finished; return the ticks since `since`, one line each, oldest first."""
    # The timeout bounds a retraining run too, which on two busy cores took several minutes.
    names, deadline = sensor_names(fleet), time.monotonic() + timeout
    while True:
        ticks = recorded_ticks(instance, names, since)
        fresh = {name for name, found in ticks.items() if any(_finished(t) and t.timestamp > after for t in found)}
        run_ids = [run_id for found in ticks.values() for t in found for run_id in t.run_ids]
        runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
        if fresh == set(names) and all(run is not None and run.status in FINISHED for run in runs):
            return _summarize(ticks, {run.run_id: run for run in runs}, fleet)
        if process.poll() is not None:
            raise DaemonError(f"the Dagster daemon exited with code {process.returncode}; see its log")
        if time.monotonic() > deadline:
            raise DaemonError(f"no tick of {sorted(set(names) - fresh)} or unfinished runs {run_ids} after {timeout:.0f}s")
        time.sleep(0.5)


def _summarize(ticks: dict[str, list], runs: dict, fleet: str) -> list[Tick]:
    summary = []
    for name in sensor_names(fleet):
        found = sorted(ticks.get(name, []), key=lambda t: t.timestamp)
        sensor = name.removeprefix(f"{fleet}_")
        for tick in found:
            for run_id, run_key in zip(tick.run_ids, tick.run_keys or [None] * len(tick.run_ids), strict=False):
                run = runs[run_id]
                summary.append(Tick(sensor, "requested", run.tags.get(REASON_TAG, ""), run_key, run_id,
                                    run.status == dg.DagsterRunStatus.SUCCESS))
        finished = [t for t in found if _finished(t)]
        if finished and not finished[-1].run_ids:
            last = finished[-1]
            if last.status.value == "FAILURE":
                summary.append(Tick(sensor, "failed", last.error.message.strip().splitlines()[-1] if last.error else "error"))
            else:
                summary.append(Tick(sensor, "skipped", last.skip_reason or ""))
    return summary
