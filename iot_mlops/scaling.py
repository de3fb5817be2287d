"""Distributed execution: each fleet's daily job on dagster-celery workers over RabbitMQ, and range backfills
split into concurrent runs so that partitions, not only assets, spread over the workers.

Settings (environment; the executor and the workers read the same ones, see `iot_mlops.scaling_worker`):
    IOT_MLOPS_CELERY_BROKER   broker URL, default pyamqp://guest:guest@127.0.0.1:5672//
    IOT_MLOPS_CELERY_BACKEND  result backend, default rpc:// (results come back to the run over AMQP)
    IOT_MLOPS_CELERY_QUEUE    queue the steps go to and the workers consume, default dagster
    IOT_MLOPS_CELERY_RESULT_EXPIRES  seconds an rpc reply queue outlives its last poll, default 300
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
from dagster_celery import celery_executor
from pydantic_settings import BaseSettings, SettingsConfigDict

from iot_mlops.automation.jobs import DAILY, asset_keys
from iot_mlops.profiles import FleetProfile
from iot_mlops.secrets import hide_password

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# Upstream stages finish before the next starts: features of a day read the day before (window lookback),
# so feature runs in parallel are only equal to one run when all their inputs are already in the lake.
FEATURE_STAGES: tuple[tuple[str, ...], ...] = (("devices",), ("telemetry", "events"), ("features",))
WORKER_METADATA = "Celery worker"  # what dagster-celery's engine event records for each step
BACKFILL_TAG = "iot_mlops/backfill"  # groups the runs of one distributed backfill (filter by it in the UI)


class CelerySettings(BaseSettings):
    """Broker, result backend and queue of the celery executor and its workers."""

    model_config = SettingsConfigDict(env_prefix="IOT_MLOPS_CELERY_", extra="ignore", frozen=True)

    broker: str = "pyamqp://guest:guest@127.0.0.1:5672//"
    backend: str = "rpc://"
    queue: str = "dagster"
    result_expires: int = 300  # a run polls its reply queue every second; celery's default keeps it a day

    def executor_config(self) -> dict:
        """The `execution.config` block of dagster-celery's executor."""
        return {"broker": self.broker, "backend": self.backend,
                "config_source": {"task_default_queue": self.queue, "result_expires": self.result_expires}}


def distributed_executor(settings: CelerySettings | None = None) -> dg.ExecutorDefinition:
    """dagster-celery's executor with its config fixed from settings (a range run has no partition config to carry it)."""
    return celery_executor.configured((settings or CelerySettings()).executor_config(), name="iot_mlops_celery")


def distributed_job_name(fleet: str) -> str:
    return f"{fleet}_daily_distributed"


def distributed_jobs(profile: FleetProfile) -> list[dg.UnresolvedAssetJobDefinition]:
    """`<fleet>_daily_distributed`: the daily assets with every step sent to a celery worker."""
    fleet = profile.name
    return [
        dg.define_asset_job(
            distributed_job_name(fleet),
            selection=dg.AssetSelection.assets(*asset_keys(profile, DAILY)),
            executor_def=distributed_executor(),
            description=(f"{fleet}'s daily assets, each step on a dagster-celery worker (queue from IOT_MLOPS_CELERY_QUEUE). "
                         "Start workers with `celery -A iot_mlops.scaling_worker worker`; backfill ranges with "
                         "`python -m iot_mlops.scaling backfill`."),
        )
    ]


def worker_command(name: str, queue: str | None = None, concurrency: int = 1, loglevel: str = "INFO") -> list[str]:
    """The command line of one worker: one step at a time per process slot, no prefetch beyond it."""
    queue = queue or CelerySettings().queue
    return ["celery", "-A", "iot_mlops.scaling_worker", "worker", "-Q", queue, "-n", f"{name}@%h",
            "-c", str(concurrency), "--prefetch-multiplier=1", "-l", loglevel, "--without-gossip", "--without-mingle"]


def live_workers(settings: CelerySettings | None = None, timeout: float = 2.0) -> list[str]:
    """Names of the workers that consume the queue now (asked over the broker)."""
    from iot_mlops.scaling_worker import make_worker_app

    settings = settings or CelerySettings()
    app = make_worker_app(settings)
    try:
        queues = app.control.inspect(timeout=timeout).active_queues() or {}
    finally:
        app.close()
    return sorted(w for w, qs in queues.items() if any(q["name"] == settings.queue for q in qs))


def partition_ranges(days: Sequence[date], per_run: int) -> list[tuple[date, date]]:
    """Consecutive days cut into ranges of at most `per_run` days (gaps start a new range)."""
    if per_run < 1:
        raise ValueError(f"partitions per run must be at least 1, not {per_run}")
    ranges: list[list[date]] = []
    for day in sorted(set(days)):
        if ranges and len(ranges[-1]) < per_run and ranges[-1][-1] + timedelta(days=1) == day:
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return [(r[0], r[-1]) for r in ranges]


@dataclass(frozen=True)
class RangeRun:
    """One run of a backfill: its assets, its days (None for unpartitioned assets) and how it ended."""

    assets: tuple[str, ...]
    days: tuple[date, date] | None
    run_id: str
    success: bool


class BackfillFailed(RuntimeError):
    """A stage of a distributed backfill had failed runs; later stages did not start."""

    def __init__(self, failed: list[RangeRun], done: list[RangeRun]):
        self.failed, self.done = failed, done
        names = "; ".join(f"{'+'.join(r.assets)} {_span(r.days)} (run {r.run_id})" for r in failed)
        super().__init__(f"{len(failed)} run(s) failed: {names}. Their event logs in Dagster say why; "
                         "re-running the backfill replaces the partitions.")


def _span(days: tuple[date, date] | None) -> str:
    return "unpartitioned" if days is None else f"{days[0]}...{days[1]}"


def load_distributed_job(fleet: str) -> dg.JobDefinition:
    """The fleet's distributed job from the project's definitions (what the UI shows, too)."""
    from iot_mlops.definitions import defs

    return defs.resolve_job_def(distributed_job_name(fleet))


def distributed_job(fleet: str):
    """The fleet's distributed job, reconstructable: every worker rebuilds it with `load_distributed_job(fleet)`."""
    return dg.build_reconstructable_job("iot_mlops.scaling", "load_distributed_job", reconstructable_args=(fleet,),
                                        reconstructor_working_directory=os.getcwd())


def distributed_backfill(
    fleet: str,
    first: date,
    last: date,
    instance: dg.DagsterInstance,
    partitions_per_run: int = 5,
    max_concurrent_runs: int = 4,
    stages: Sequence[Sequence[str]] = FEATURE_STAGES,
) -> list[RangeRun]:
    """Materialize the stages' assets for first..last: each stage as concurrent range runs, steps on celery workers."""
    if instance.is_ephemeral:
        raise ValueError("the celery executor needs a persistent Dagster instance shared with the workers: set DAGSTER_HOME")
    if last < first:
        raise ValueError(f"empty range: {first} is after {last}")
    graph = distributed_job(fleet).get_definition().asset_layer.asset_graph
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    plan = []
    for stage in stages:
        partitioned = {graph.get(dg.AssetKey([fleet, name])).partitions_def is not None for name in stage}
        if len(partitioned) != 1:
            raise ValueError(f"stage {stage} mixes partitioned and unpartitioned assets")
        per_run = len(days) if "features" in stage and _reads_earlier_features(fleet) else partitions_per_run
        plan.append((tuple(stage), partition_ranges(days, per_run) if partitioned.pop() else [None]))
    # One process per concurrent run, as a run launcher would: Dagster's run setup is not thread-safe. Run processes
    # fork with the definitions already loaded: from this process when it has no other thread (forking is safe
    # then), else from a fork server that imports them once.
    if threading.active_count() == 1:
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["iot_mlops.definitions"])
    done: list[RangeRun] = []
    backfill_id = uuid.uuid4().hex[:8]
    with ProcessPoolExecutor(max_concurrent_runs, mp_context=context) as pool:
        for names, spans in plan:
            runs = list(pool.map(_run, [(instance.get_ref(), fleet, names, span, backfill_id) for span in spans]))
            done.extend(r for r in runs if r.success)
            failed = [r for r in runs if not r.success]
            if failed:
                raise BackfillFailed(failed, done)
    return done


def _reads_earlier_features(fleet: str) -> bool:
    """Whether a fleet's features read the stored features of earlier days (device baselines): then they run in order."""
    from iot_mlops.profiles import load_profiles
    from iot_mlops.settings import get_settings

    return bool(load_profiles(get_settings().profiles_dir)[fleet].features.baseline_reach)


def _run(args: tuple) -> RangeRun:
    """One range run, orchestrated in this process; its steps go to the workers."""
    instance_ref, fleet, names, span, backfill_id = args
    # dagster-celery registers its task anew for every step it submits; celery warns each time, harmlessly.
    warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")
    tags = {BACKFILL_TAG: backfill_id, **({RANGE_START: span[0].isoformat(), RANGE_END: span[1].isoformat()} if span else {})}
    keys = [dg.AssetKey([fleet, name]) for name in names]
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        result = dg.execute_job(distributed_job(fleet), instance=instance, tags=tags, asset_selection=keys, raise_on_error=False)
    return RangeRun(assets=names, days=span, run_id=result.run_id, success=result.success)


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Which celery worker executed each step of a run, from dagster-celery's engine events."""
    out = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        worker = data.metadata.get(WORKER_METADATA) if data else None
        if worker is not None and record.step_key:
            out[record.step_key] = worker.value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m iot_mlops.scaling backfill --fleet F --start D --end D`: a range backfill over the workers."""
    parser = argparse.ArgumentParser(prog="python -m iot_mlops.scaling")
    sub = parser.add_subparsers(dest="command", required=True)
    backfill = sub.add_parser("backfill", help="Devices, telemetry/events, then features for a day range, over celery workers.")
    backfill.add_argument("--fleet", required=True)
    backfill.add_argument("--start", required=True, type=date.fromisoformat)
    backfill.add_argument("--end", required=True, type=date.fromisoformat)
    backfill.add_argument("--per-run", type=int, default=5, help="Days per run (default 5).")
    backfill.add_argument("--max-concurrent-runs", type=int, default=4)
    sub.add_parser("workers", help="List the workers consuming the queue.")
    args = parser.parse_args(argv)
    if args.command == "workers":
        print("\n".join(live_workers()) or f"no worker consumes queue {CelerySettings().queue!r}")
        return 0
    if not live_workers():
        raise SystemExit(f"no celery worker consumes queue {CelerySettings().queue!r} on {hide_password(CelerySettings().broker)}: "
                         "start one with `celery -A iot_mlops.scaling_worker worker -Q <queue>`")
    with dg.DagsterInstance.get() as instance:
        try:
            runs = distributed_backfill(args.fleet, args.start, args.end, instance, args.per_run, args.max_concurrent_runs)
        except BackfillFailed as failure:
            raise SystemExit(str(failure)) from None
        for run in runs:
            workers = sorted(set(step_workers(instance, run.run_id).values()))
            print(f"{'+'.join(run.assets):<18} {_span(run.days):<24} run {run.run_id}  workers {', '.join(workers)}")
    return 0


if __name__ == "__main__":
    # Through the package module, so the run processes unpickle `iot_mlops.scaling._run`, not `__main__._run`.
    from iot_mlops.scaling import main as _main

    raise SystemExit(_main())
