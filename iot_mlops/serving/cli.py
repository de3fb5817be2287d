"""`iot-mlops serve` (the prediction service under uvicorn) and `iot-mlops keys` (API key hashes)."""

from __future__ import annotations

import socket
import sys
from typing import Annotated, Optional

import typer

keys_app = typer.Typer(help="API keys of the prediction service: only their SHA-256 hashes are configured.",
                       no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(envvar="IOT_MLOPS_SERVE_HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="IOT_MLOPS_SERVE_PORT", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(envvar="IOT_MLOPS_SERVE_WORKERS", min=1, help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
) -> None:
    """Run the prediction API (OpenAPI docs at /docs); keys from IOT_MLOPS_API_KEYS."""
    import uvicorn

    from iot_mlops.serving.auth import parse_keys
    from iot_mlops.serving.config import ServingSettings
    from iot_mlops.settings import get_settings

    store = get_settings().store
    if workers > 1 and not store.startswith("postgresql"):
        # SQLite takes one writer process: N workers writing predictions and feedback would queue on its lock.
        typer.echo(f"error: --workers {workers} needs a Postgres operational store (IOT_MLOPS_STORE_URL=postgresql://...); "
                   "the SQLite default serves with one worker", err=True)
        raise typer.Exit(2)

    try:
        keys = parse_keys(ServingSettings().api_keys)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    if not keys:
        typer.echo("warning: IOT_MLOPS_API_KEYS is empty: every endpoint but /healthz, /readyz and /docs answers 401",
                   err=True)
    app = "iot_mlops.serving.app:create_app"
    if workers > 1:
        _prepare_stores()
    if workers > 1 and hasattr(socket, "SO_REUSEPORT"):
        from iot_mlops.serving.workers import ReusePortWorkers

        config = uvicorn.Config(app, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                                access_log=access_log)
        ReusePortWorkers(config).run()
    else:
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log)


def _prepare_stores() -> None:
    """Create or migrate the operational store and the MLflow database once, before the workers start together."""
    from iot_mlops.opstore.engine import engine_for
    from iot_mlops.registry.mlflow_service import ModelRegistry
    from iot_mlops.settings import get_settings, psycopg2_url

    settings = get_settings()
    engine_for(psycopg2_url(settings.store)).dispose()
    ModelRegistry(settings.tracking_uri, settings.artifacts)


@keys_app.command("hash")
def keys_hash(
    key: Annotated[Optional[str], typer.Argument(help="The key; read from stdin when omitted (keeps it out of shell history).")] = None,
    role: Annotated[Optional[str], typer.Option(help="Print a full IOT_MLOPS_API_KEYS entry for this role.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name recorded as the actor (with --role).")] = None,
) -> None:
    """Print the SHA-256 hash of a key (or its `hash:role[:name]` entry)."""
    from iot_mlops.serving.auth import Role, hash_key

    key = key if key is not None else sys.stdin.readline().rstrip("\n")
    if not key:
        typer.echo("error: empty key", err=True)
        raise typer.Exit(1)
    if role is not None and role not in Role.__members__:
        typer.echo(f"error: unknown role {role!r}; expected one of {list(Role.__members__)}", err=True)
        raise typer.Exit(1)
    digest = hash_key(key)
    typer.echo(":".join(p for p in (digest, role, name if role else None) if p))


@keys_app.command("new")
def keys_new(
    role: Annotated[str, typer.Option(help="reader, operator or admin.")] = "reader",
    name: Annotated[Optional[str], typer.Option(help="Name recorded as the actor.")] = None,
) -> None:
    """Make a random key: prints the key (give it to the client) and its IOT_MLOPS_API_KEYS entry (configure that)."""
    from iot_mlops.serving.auth import Role, hash_key, new_key

    if role not in Role.__members__:
        typer.echo(f"error: unknown role {role!r}; expected one of {list(Role.__members__)}", err=True)
        raise typer.Exit(1)
    key = new_key()
    typer.echo(f"key: {key}")
    typer.echo(f"entry: {':'.join(p for p in (hash_key(key), role, name) if p)}")
