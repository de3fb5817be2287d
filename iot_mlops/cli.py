"""The `iot-mlops` command."""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer

from iot_mlops.automation.cli import decisions, default_actor
from iot_mlops.deploy.doctor import doctor
from iot_mlops.ingestion.cli import ingest_app
from iot_mlops.monitoring.cli import feedback_app
from iot_mlops.names import retraining_job
from iot_mlops.registry.cli import _clean_errors, _decision_log, models_app
from iot_mlops.serving.cli import keys_app, serve

app = typer.Typer(help="Predictive-maintenance ML lifecycle for IoT fleets, on Dagster.", no_args_is_help=True)
profiles_app = typer.Typer(help="Fleet profiles.", no_args_is_help=True)
features_app = typer.Typer(help="Online features.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(feedback_app, name="feedback")
app.add_typer(ingest_app, name="ingest")
app.add_typer(keys_app, name="keys")
app.command()(serve)
app.command()(doctor)
app.command()(decisions)


@app.callback()
def _dagster_home() -> None:
    """Every command uses one Dagster instance: DAGSTER_HOME, else this folder when it holds dagster.yaml."""
    if not os.environ.get("DAGSTER_HOME") and Path("dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
    if not os.environ.get("DAGSTER_HOME"):
        home = Path("data/dagster_home").resolve()
        home.mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)


@app.command()
def retrain(
    fleet: Annotated[str, typer.Option(help="Fleet to retrain.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the decision log and on the run.")],
    actor: Annotated[Optional[str], typer.Option(help="Who; default cli:<login name>.")] = None,
) -> None:
    """Retrain a fleet's failure model now and gate it: the manual retraining job, logged with its reason."""
    import dagster as dg

    from iot_mlops.automation.retraining import gate_verdicts, manual_retraining
    from iot_mlops.definitions import build_definitions

    if not reason.strip():
        typer.echo("error: give a reason for the retraining", err=True)
        raise typer.Exit(2)
    started = time.monotonic()

    def progress(step: str, event: str, seconds: float) -> None:
        label = {"STEP_START": "started", "STEP_SUCCESS": f"done in {seconds:.0f}s", "STEP_FAILURE": f"FAILED after {seconds:.0f}s"}
        typer.echo(f"[{time.monotonic() - started:4.0f}s] {step.split('__', 1)[-1]}: {label.get(event, event)}")

    with _clean_errors():
        defs, instance = build_definitions(), dg.DagsterInstance.get()
        suffix = retraining_job("")
        fleets = sorted(j.name.removesuffix(suffix) for j in defs.resolve_all_job_defs() if j.name.endswith(suffix))
        if fleet not in fleets:
            typer.echo(f"error: no fleet {fleet!r}; fleets: {', '.join(fleets)}", err=True)
            raise typer.Exit(2)
        typer.echo(f"{fleet}: retraining (dataset, models, gate) on the instance at {instance.root_directory}")
        result = manual_retraining(defs, fleet, reason, actor or default_actor(), instance, on_event=progress)
        verdicts = gate_verdicts(_decision_log(), result.run_id)
    status = "succeeded" if result.success else "failed"
    typer.echo(f"{fleet}: retraining run {result.run_id} {status} in {time.monotonic() - started:.0f}s")
    for line in verdicts:
        typer.echo(f"gate: {line}")
    if not result.success:
        raise typer.Exit(1)


@app.command()
def demo(
    devices: Annotated[int, typer.Option(min=1, help="Simulated devices.")] = 250,
    days: Annotated[int, typer.Option(min=1, help="Days to simulate at least, ending yesterday (UTC); more if a "
                                                  "component would not fail often enough for the first training.")] = 21,
    end: Annotated[Optional[datetime], typer.Option(formats=["%Y-%m-%d"], help="Last day (default yesterday).")] = None,
    nights: Annotated[int, typer.Option(min=1, help="Last days replayed night by night (schedule, feedback, sensors).")] = 5,
    drift_days: Annotated[int, typer.Option(min=1, help="Last days with drift: a batch of new-model heaters joins the fleet.")] = 4,
) -> None:
    """Simulate a water-heater fleet and run the whole loop: history, first model, nights with drift, retraining."""
    from iot_mlops.demo import format_summary, run_demo

    summary = run_demo(devices=devices, days=days, end=end.date() if end else None, nights=nights, drift_days=drift_days,
                       echo=typer.echo)
    typer.echo(format_summary(summary))


@app.command()
def simulate(
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First day.")],
    days: Annotated[int, typer.Option(min=1)] = 1,
    devices: Annotated[Optional[int], typer.Option(min=1, help="Override the profile's fleet size.")] = None,
    fleet: str = "water_heaters",
    to: Annotated[str, typer.Option(help="'files' (landing files) or 'mqtt' (publish readings to the broker).")] = "files",
    host: Annotated[str, typer.Option(help="MQTT broker host (with --to mqtt).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port (with --to mqtt).")] = 1883,
) -> None:
    """Write a simulated fleet's daily landing files, or publish its telemetry over MQTT, as its gateways would."""
    from iot_mlops.demo import simulate as write_days
    from iot_mlops.demo import simulated
    from iot_mlops.profiles import load_profiles
    from iot_mlops.settings import get_settings

    profile = load_profiles(get_settings().profiles_dir)[fleet]
    size = devices or profile.source.simulator.devices
    day_list = [start.date() + timedelta(days=i) for i in range(days)]
    if to == "mqtt":
        from iot_mlops.sources.mqtt_publish import publish_simulated

        published = publish_simulated(profile, day_list, size, host, port)
        typer.echo(f"published {published:,} readings to fleets/{fleet}/+/telemetry at {host}:{port}")
    elif to == "files":
        write_days(simulated(profile, size), day_list, typer.echo)
    else:
        typer.echo(f"error: --to must be 'files' or 'mqtt', not {to!r}", err=True)
        raise typer.Exit(2)


@app.command()
def evaluate(
    fleet: Annotated[str, typer.Option(help="Fleet to evaluate: its reference split if the profile has one, else a time split.")] = "azure_pdm",
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON object of the metrics.")] = False,
    algorithm: Annotated[Optional[str], typer.Option(help="Override the profile's algorithm.")] = None,
    search_iterations: Annotated[int, typer.Option(min=1)] = 3,
) -> None:
    """Train our model and the reference recipe on the same split of the fleet's data; compare them on the same rows."""
    from iot_mlops.ingestion.sources import SourceError
    from iot_mlops.lake import Lake
    from iot_mlops.profiles import ProfileError, load_profiles
    from iot_mlops.settings import get_settings
    from iot_mlops.training.dataset import DatasetError
    from iot_mlops.training.model import ModelConfig
    from iot_mlops.training.reference_evaluation import evaluate_reference, format_table
    from iot_mlops.training.train import TrainingDataError

    settings = get_settings()
    try:
        profiles = load_profiles(settings.profiles_dir)
        if fleet not in profiles:
            raise ProfileError(f"no fleet {fleet!r} in {settings.profiles_dir} (fleets: {', '.join(sorted(profiles))})")
        profile = profiles[fleet]
        config = ModelConfig(algorithm=algorithm or profile.training.algorithm, scaling=profile.training.scaling,
                             search_iterations=search_iterations)
        result = evaluate_reference(profile, settings.profiles_dir.resolve(), Lake(settings.lake), settings.landing, config,
                                    progress=lambda line: typer.echo(line, err=True))
    except (ProfileError, SourceError, DatasetError, TrainingDataError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"{fleet}: train < {result.split[0]}, test >= {result.split[1]}; rows {result.rows}; ours = {config.algorithm}")
    typer.echo(format_table(result))
    if as_json:
        typer.echo(json.dumps(result.summary()))


@profiles_app.command("validate")
def profiles_validate(paths: Annotated[Optional[list[Path]], typer.Argument(help="Profile files (default: all).")] = None) -> None:
    """Check fleet profiles; a bad one prints the file and field at fault."""
    from iot_mlops.profiles import ProfileError, load_profile, load_profiles
    from iot_mlops.settings import get_settings

    try:
        profiles = [load_profile(p) for p in paths] if paths else list(load_profiles(get_settings().profiles_dir).values())
    except ProfileError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    for profile in profiles:
        typer.echo(f"ok  {profile.name}: {len(profile.sensors)} sensors, {len(profile.components)} components, source {profile.source.kind}")


@features_app.command("show")
def features_show(fleet: str, device_id: str) -> None:
    """Print a device's newest online feature row as JSON."""
    from iot_mlops.features import get_device_features

    row = get_device_features(fleet, device_id)
    if row is None:
        typer.echo(f"error: no online features for {fleet}/{device_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(row, default=lambda v: v.isoformat() if isinstance(v, (date, datetime)) else str(v), indent=2))
