"""`iot-mlops ingest ...`: streaming ingestion commands."""

from __future__ import annotations

import json
import signal
from typing import Annotated, Optional

import typer

ingest_app = typer.Typer(help="Streaming telemetry ingestion.", no_args_is_help=True)


@ingest_app.callback()
def _group() -> None:
    """Streaming telemetry ingestion."""


@ingest_app.command("mqtt")
def mqtt_command(
    fleet: Annotated[str, typer.Option(help="Fleet profile name; subscribes to fleets/<fleet>/+/telemetry.")],
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="MQTT broker port.")] = 1883,
    client_id: Annotated[Optional[str], typer.Option(help="Session client id (default iot-mlops-ingest-<fleet>).")] = None,
    flush_seconds: Annotated[float, typer.Option(min=0.01, help="Land buffered messages at least this often.")] = 2.0,
    max_batch: Annotated[int, typer.Option(min=1, help="Land as soon as this many messages are buffered.")] = 5000,
    receive_maximum: Annotated[int, typer.Option(min=1, max=65535, help="Unacknowledged messages the broker may send.")] = 65535,
    session_expiry: Annotated[int, typer.Option(min=1, help="Seconds the broker keeps the session while the ingester is away.")] = 7 * 86400,
    max_messages: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many messages (tests).")] = None,
    idle_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Stop after this many seconds without a message (tests).")] = None,
) -> None:
    """Land a fleet's MQTT telemetry in its landing folder, where the telemetry asset reads it."""
    from iot_mlops.ingestion.mqtt import MqttError, MqttIngester, MqttOptions
    from iot_mlops.profiles import ProfileError, load_profiles, source_folder
    from iot_mlops.settings import get_settings

    settings = get_settings()
    try:
        profiles = load_profiles(settings.profiles_dir)
        if fleet not in profiles:
            raise ProfileError(f"no fleet {fleet!r} in {settings.profiles_dir} (fleets: {', '.join(sorted(profiles))})")
        profile = profiles[fleet]
        folder = source_folder(profile, settings.profiles_dir, settings.landing)
        options = MqttOptions(host=host, port=port, client_id=client_id, flush_seconds=flush_seconds, max_batch=max_batch,
                              receive_maximum=receive_maximum, session_expiry=session_expiry, max_messages=max_messages,
                              idle_timeout=idle_timeout)  # fmt: skip
        ingester = MqttIngester(profile, folder, options, log=lambda line: typer.echo(line))
        previous = {sig: signal.signal(sig, lambda *_: ingester.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            stats = ingester.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except (MqttError, ProfileError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo("stats: " + json.dumps(stats.summary()))


if __name__ == "__main__":
    ingest_app()
