"""Doctor checks of the Dagster instance (DAGSTER_HOME and its dagster.yaml) and of the daemon that serves it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from iot_mlops.deploy import probes
from iot_mlops.deploy.report import ENV_FILE, FAIL, OK, PG_FORM, WARN, Check, Context

HEARTBEAT_STALE = 120  # seconds; the daemon beats every 30 s


def env_refs(node: Any) -> Iterator[str]:
    """Environment variables a dagster.yaml reads (`{env: NAME}`)."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            yield node["env"]
        for value in node.values():
            yield from env_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_refs(value)


def resolve(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"env"}:
        return os.environ.get(value["env"])
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    return value


def dagster_home() -> tuple[Path | None, str]:
    """DAGSTER_HOME as the iot-mlops commands pick it: the variable, else this folder if it holds dagster.yaml."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]), f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
    if Path("dagster.yaml").is_file():
        return Path.cwd(), f"{Path.cwd()} (DAGSTER_HOME not set: this folder's dagster.yaml)"
    return None, ""


def check_dagster(ctx: Context) -> list[Check]:
    from dagster import DagsterInstance, DagsterInvalidConfigError

    home, source = dagster_home()
    name, setup = "dagster instance", "mkdir -p DIR, copy deploy/dagster.yaml there and export DAGSTER_HOME=DIR"
    if home is None:
        return [Check(name, FAIL, "DAGSTER_HOME is not set and there is no dagster.yaml in this folder", setup)]
    if not home.is_absolute() or not home.is_dir():
        return [Check(name, FAIL, f"DAGSTER_HOME={home} is not an absolute path to a folder", setup)]
    config = home / "dagster.yaml"
    if not config.is_file():
        return [Check(name, WARN, f"{config} missing: Dagster's defaults (SQLite under {home})", setup)]
    try:
        raw = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as error:
        return [Check(name, FAIL, f"{config} is not valid YAML: {' '.join(str(error).split())}", "compare it with deploy/dagster.yaml")]
    missing = sorted({v for v in env_refs(raw) if not os.environ.get(v)})
    if missing:
        return [Check(name, FAIL, f"{config} reads {', '.join(missing)} from the environment, not set",
                      f"set them (see {ENV_FILE})")]
    storage = next(iter(raw.get("storage") or {"sqlite": None}))
    if storage == "postgres":
        pg = raw["storage"]["postgres"]
        variable = pg["postgres_url"]["env"] if isinstance(pg.get("postgres_url"), dict) else f"storage.postgres in {config}"
        url = resolve(pg.get("postgres_url")) or _db_url(resolve(pg.get("postgres_db")))
        problem = probes.driver_problem(url, variable)
        if problem:
            return [Check(name, FAIL, f"Dagster storage: {problem}", f"write {variable} as {PG_FORM}")]
        problem = probes.postgres(url)
        if problem:
            return [Check(name, FAIL, f"Dagster storage: {problem}", probes.postgres_fix(problem, variable))]
        ctx.dagster_db = probes.database_of(url)
    for section in ("local_artifact_storage", "compute_logs"):
        base = resolve(((raw.get(section) or {}).get("config") or {}).get("base_dir"))
        problem = isinstance(base, str) and probes.writable(Path(base))
        if problem:
            return [Check(name, FAIL, f"{section}: {problem}", "point IOT_MLOPS_DAGSTER_DIR at a folder this user can write")]
    try:  # Dagster validates the whole file before it opens any storage
        instance = DagsterInstance.from_config(str(home))
    except DagsterInvalidConfigError as error:
        found = "; ".join(e.message for e in error.errors) or str(error)
        return [Check(name, FAIL, f"{config} is not a valid instance configuration: {' '.join(found.split())}",
                      "compare it with deploy/dagster.yaml")]
    with instance:
        runs = instance.get_runs_count()
        coordinator = instance.run_coordinator
        queue = instance.get_concurrency_config().run_queue_config  # the concurrency section, over the coordinator's own
        limits = f" (max {queue.max_concurrent_runs} runs, {len(queue.tag_concurrency_limits)} tag limits)" if queue else ""
        detail = (f"{source}: {storage} storage ({type(instance.run_storage).__name__}), "
                  f"{type(coordinator).__name__}{limits}, {runs} runs recorded")
        return [Check(name, OK, probes.mask(detail)), _daemon(instance)]


def _db_url(db: dict | None) -> str:
    from dagster_postgres.utils import get_conn_string

    return get_conn_string(**db) if db else ""


def _daemon(instance) -> Check:
    """Whether a dagster-daemon beats for this instance: without it no sensor, schedule or queued run starts."""
    beats = instance.get_daemon_heartbeats()
    required = instance.get_required_daemon_types()
    fresh = [t for t in required if t in beats and time.time() - beats[t].timestamp < HEARTBEAT_STALE]
    fix = "run `dagster-daemon run -w deploy/workspace.yaml` (one per deployment) with the same environment"
    if len(fresh) == len(required):
        return Check("dagster daemon", OK, f"{len(fresh)} daemons beating ({', '.join(sorted(fresh))})")
    stale = sorted(set(required) - set(fresh))
    return Check("dagster daemon", WARN, f"no recent heartbeat of {', '.join(stale)}: sensors, schedules and queued runs "
                                         "wait until a daemon runs", fix)
