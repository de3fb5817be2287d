"""`iot-mlops doctor`: check a deployment's settings and connections, one line per check, a fix for each problem."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from iot_mlops.deploy import probes
from iot_mlops.deploy.instance import check_dagster
from iot_mlops.deploy.report import FAIL, OK, PG_FORM, SKIP, WARN, Check, Context
from iot_mlops.names import DEFINITIONS_MODULE

__all__ = ["Check", "Context", "check_dagster", "doctor", "run_checks"]


def check_settings(ctx: Context) -> list[Check]:
    from pydantic import ValidationError

    from iot_mlops.settings import Settings

    try:
        ctx.settings = Settings()
        interval = ctx.settings.sensor_interval_seconds
    except ValidationError as error:
        wrong = "; ".join(f"IOT_MLOPS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        return [Check("settings", FAIL, wrong, "correct these environment variables")]
    s = ctx.settings
    return [Check("settings", OK, f"data {s.data_dir.resolve()}, profiles {s.profiles_dir.resolve()}, "
                                  f"sensors every {interval} s")]


def check_profiles(ctx: Context) -> list[Check]:
    from iot_mlops.profiles import ProfileError, load_profiles, source_folder

    folder = ctx.settings.profiles_dir.resolve()
    try:
        profiles = load_profiles(folder)
    except ProfileError as error:
        return [Check("profiles", FAIL, str(error), "correct the profile, or point IOT_MLOPS_PROFILES_DIR at the profiles folder")]
    missing = [f"{p.name} reads {source_folder(p, folder, ctx.settings.landing)}" for p in profiles.values()
               if p.source.kind == "tables" and not source_folder(p, folder, ctx.settings.landing).is_dir()]
    if missing:
        return [Check("profiles", FAIL, f"source folder missing: {'; '.join(missing)}",
                      "mount the data there or correct source.path in the profile")]
    ctx.profiles_ok = True
    fleets = ", ".join(f"{p.name} ({p.source.kind})" for p in profiles.values())
    return [Check("profiles", OK, f"{len(profiles)} fleet(s) in {folder}: {fleets}")]


def check_definitions(ctx: Context) -> list[Check]:
    if not ctx.profiles_ok:
        return [Check("code location", SKIP, "needs the profiles to load")]
    # By name, as the workspace loads it: the code location is the composition root, above this module.
    repo = importlib.import_module(DEFINITIONS_MODULE).build_definitions().get_repository_def()
    return [Check("code location", OK, f"{DEFINITIONS_MODULE} loads: {len(repo.job_names)} jobs, "
                                       f"{len(repo.sensor_defs)} sensors, {len(repo.schedule_defs)} schedules")]


def check_folders(ctx: Context) -> list[Check]:
    s = ctx.settings
    out = []
    for name, path, variable in (("data folder", s.data_dir.resolve(), "IOT_MLOPS_DATA_DIR"), ("lake", s.lake, "IOT_MLOPS_LAKE_DIR"),
                                 ("landing", s.landing, "IOT_MLOPS_LANDING_DIR"),
                                 ("MLflow artifacts", s.artifacts, "IOT_MLOPS_MLFLOW_ARTIFACTS_DIR")):
        problem = probes.writable(path)
        if problem:
            out.append(Check(name, FAIL, problem, f"set {variable} to a folder this user can write, or fix its permissions"))
        else:
            out.append(Check(name, OK, f"{path} writable" + ("" if path.exists() else " (created on first use)")))
    return out


def _postgres_problem(url: str, variable: str) -> Check | None:
    # The project's own connections turn a bare postgresql:// into psycopg2 (registry.mlflow_service.psycopg2_url).
    problem = probes.driver_problem(url.replace("postgresql://", "postgresql+psycopg2://", 1), variable)
    if problem:
        return Check("", FAIL, problem, f"write {variable} as {PG_FORM}")
    problem = probes.postgres(url)
    return Check("", FAIL, problem, probes.postgres_fix(problem, variable)) if problem else None


def _sqlite_problem(url: str, variable: str) -> Check | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        problem = probes.writable(Path(url.removeprefix("sqlite:///")).parent)
        if problem:
            return Check("", FAIL, problem, f"set {variable}, or IOT_MLOPS_DATA_DIR, to a place this user can write")
    return None


def check_store(ctx: Context) -> list[Check]:
    import sqlalchemy as sa

    from iot_mlops.opstore.engine import engine_for, revision
    from iot_mlops.settings import psycopg2_url

    url, variable = ctx.settings.store, "IOT_MLOPS_STORE_URL"
    problem = (_postgres_problem(url, variable) if probes.is_postgres(url) else _sqlite_problem(url, variable))
    if problem:
        return [Check("operational store", FAIL, problem.detail, problem.fix)]
    engine = engine_for(psycopg2_url(url))  # creates the SQLite folder, migrates the schema to the newest revision
    tables = sorted(set(sa.inspect(engine).get_table_names()) - {"alembic_version"})
    with engine.connect() as conn:
        at = revision(conn)
    return [Check("operational store", OK, f"{probes.mask(url)}: schema at revision {at}, tables ready ({', '.join(tables)})")]


def check_mlflow(ctx: Context) -> list[Check]:
    from mlflow.exceptions import MlflowException

    from iot_mlops.registry.mlflow_service import ModelRegistry

    uri, variable = ctx.settings.tracking_uri, "IOT_MLOPS_MLFLOW_TRACKING_URI"
    if probes.is_postgres(uri):
        if ctx.dagster_db and probes.database_of(uri) == ctx.dagster_db:
            return [Check("MLflow tracking", FAIL, "MLflow and Dagster share one database; both keep `runs` and "
                          "`alembic_version` tables", f"give MLflow a database of its own in {variable}")]
        problem = _postgres_problem(uri, variable)
    else:
        problem = _sqlite_problem(uri, variable)
    if problem:
        return [Check("MLflow tracking", FAIL, problem.detail, problem.fix)]
    remote = uri.startswith(("http://", "https://"))
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    if remote:  # MLflow retries for minutes by default
        os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(probes.TIMEOUT))
    try:
        experiments = ModelRegistry(uri, ctx.settings.artifacts).client.search_experiments(max_results=100)
    except MlflowException as error:
        return [Check("MLflow tracking", FAIL, f"{probes.mask(uri)} does not answer: {probes.first_line(error)}",
                      f"start the MLflow tracking server, or correct {variable}")]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return [Check("MLflow tracking", OK, f"{probes.mask(uri)}: {len(experiments)} experiment(s)")]


def check_api_keys(ctx: Context) -> list[Check]:
    from pydantic import ValidationError

    from iot_mlops.serving.auth import parse_keys
    from iot_mlops.serving.config import ServingSettings

    try:
        keys = parse_keys(ServingSettings().api_keys)
    except (ValueError, ValidationError) as error:
        return [Check("API keys", FAIL, " ".join(str(error).split()),
                      "each entry is <sha256hex>:<role>[:<name>]; `iot-mlops keys hash --role ROLE` prints one")]
    if not keys:
        return [Check("API keys", WARN, "IOT_MLOPS_API_KEYS is empty: the prediction service answers 401 to every "
                      "request but health and docs", "create a key with `iot-mlops keys new` and add its hash entry")]
    roles = sorted({p.role.name for _, p in keys})
    return [Check("API keys", OK, f"{len(keys)} key hash(es), roles {', '.join(roles)}")]


def check_broker(name: str, address: str | None, probe: Callable[[str], str | None], variable: str) -> list[Check]:
    if not address:
        return [Check(name, SKIP, f"not configured ({variable})")]
    problem = probe(address)
    if problem:
        return [Check(name, FAIL, problem, f"start the broker, or correct {variable}")]
    return [Check(name, OK, f"{probes.mask(address)} answers")]


def _mqtt(address: str) -> str | None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return f"{address!r} is not HOST:PORT"
    return probes.mqtt(host, int(port))


def run_checks(*, celery_broker: str | None = None, mqtt: str | None = None) -> list[Check]:
    """Every check in order; a check that needs valid settings is skipped when they are not."""
    ctx = Context()
    steps: list[tuple[str, Callable[[Context], list[Check]], bool]] = [
        ("settings", check_settings, False), ("profiles", check_profiles, True), ("folders", check_folders, True),
        ("code location", check_definitions, True), ("dagster instance", check_dagster, False),
        ("operational store", check_store, True), ("MLflow tracking", check_mlflow, True), ("API keys", check_api_keys, False),
        ("RabbitMQ", lambda _: check_broker("RabbitMQ", celery_broker, probes.rabbitmq, "IOT_MLOPS_CELERY_BROKER"), False),
        ("MQTT", lambda _: check_broker("MQTT", mqtt, _mqtt, "IOT_MLOPS_MQTT_BROKER"), False),
    ]
    for name, step, needs_settings in steps:
        if needs_settings and ctx.settings is None:
            ctx.checks.append(Check(name, SKIP, "needs valid settings"))
            continue
        try:
            ctx.checks.extend(step(ctx))
        except Exception as error:  # noqa: BLE001 - a check that crashes is a failed check, reported with its cause
            ctx.checks.append(Check(name, FAIL, f"{type(error).__name__}: {probes.first_line(error)}",
                                    "the error above names the setting or service at fault"))
    return ctx.checks


def doctor(
    celery_broker: Annotated[Optional[str], typer.Option(envvar="IOT_MLOPS_CELERY_BROKER",
                                                         help="Check this RabbitMQ broker URL (distributed execution).")] = None,
    mqtt: Annotated[Optional[str], typer.Option(envvar="IOT_MLOPS_MQTT_BROKER",
                                                help="Check this MQTT broker, HOST:PORT (telemetry ingestion).")] = None,
) -> None:
    """Check this deployment's settings and connections; prints what is wrong and how to fix it; exit 1 on any FAIL."""
    checks = run_checks(celery_broker=celery_broker, mqtt=mqtt)
    for check in checks:
        typer.echo(check.line())
    failed = [c for c in checks if c.status == FAIL]
    typer.echo(f"{len(failed)} problem(s) found" if failed else "all checks passed")
    if failed:
        raise typer.Exit(1)
