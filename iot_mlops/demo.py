"""The main job on embedded defaults: simulate a water-heater fleet and run its pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from iot_mlops.definitions import build_definitions
from iot_mlops.features.online import get_device_features
from iot_mlops.profiles import FleetProfile, load_profiles, source_folder
from iot_mlops.settings import get_settings
from iot_mlops.sources.landing import simulator_for

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class DemoSummary:
    fleet: str
    days: list[date]
    devices: int
    telemetry_rows: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    event_rows: int = 0
    feature_rows: int = 0
    feature_count: int = 0
    devices_online: int = 0
    model: str = ""
    test_macro_f1: float = float("nan")
    gate: str = ""
    alerts: int = 0
    run_ids: list[str] = field(default_factory=list)


def demo_days(profile: FleetProfile, days: int, end: date | None) -> list[date]:
    """`days` days ending at `end` (default: yesterday, UTC), not before the fleet's start."""
    last = end or (datetime.now(UTC).date() - timedelta(days=1))
    first = max(profile.partitions.start, last - timedelta(days=days - 1))
    if first > last:
        raise ValueError(f"{profile.name}: no days between {profile.partitions.start} and {last}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def simulate(profile: FleetProfile, devices: int, days: list[date], echo: Callable[[str], None]) -> None:
    """Write the fleet's landing files for these days, as its gateways would."""
    spec = profile.source.simulator.model_copy(update={"devices": devices})
    fleet = profile.model_copy(update={"source": profile.source.model_copy(update={"simulator": spec})})
    simulator = simulator_for(fleet)
    folder = source_folder(profile, get_settings().profiles_dir, get_settings().landing)
    for day in days:
        started = time.perf_counter()
        simulator.write_landing(day, folder)
        echo(f"  simulated {day}: {devices} devices ({time.perf_counter() - started:.1f}s)")


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()} if events else {}


def _run(job, instance, label: str, keys: list[dg.AssetKey], echo, tags=None, run_config=None) -> dg.ExecuteInProcessResult:
    started = time.perf_counter()
    config = {**QUIET, **(run_config or {})}
    result = job.execute_in_process(instance=instance, asset_selection=keys, tags=tags or {}, run_config=config)
    if not result.success:
        raise RuntimeError(f"{label} failed; see run {result.run_id} in the Dagster UI")
    echo(f"{label}: done in {time.perf_counter() - started:.1f}s (run {result.run_id[:8]})")
    return result


def run_demo(devices: int = 200, days: int = 21, end: date | None = None, fleet: str = "water_heaters",
             echo: Callable[[str], None] = print) -> DemoSummary:
    """Simulate, then ingest, featurize, label, train, gate and score through the fleet's Dagster jobs."""
    settings = get_settings()
    profile = load_profiles(settings.profiles_dir)[fleet]
    if profile.source.kind != "simulator":
        raise ValueError(f"{fleet} is not a simulated fleet")
    window = demo_days(profile, days, end)
    summary = DemoSummary(fleet=fleet, days=window, devices=devices)
    echo(f"[1/6] simulating {fleet}: {devices} devices x {len(window)} days ({window[0]}..{window[-1]})")
    simulate(profile, devices, window, echo)

    defs = build_definitions()
    daily, training = defs.resolve_job_def(f"{fleet}_daily"), defs.resolve_job_def(f"{fleet}_training")
    instance = dg.DagsterInstance.get()
    key = lambda name: dg.AssetKey([fleet, name])  # noqa: E731
    span = {"dagster/asset_partition_range_start": str(window[0]), "dagster/asset_partition_range_end": str(window[-1])}
    results = {}
    for label, names, tags in [
        ("[2/6] devices", ["devices"], None),
        ("[3/6] telemetry and events", ["telemetry", "events"], span),
        ("[4/6] features and labels", ["features", "labels"], span),
    ]:
        result = _run(daily, instance, label, [key(n) for n in names], echo, tags)
        summary.run_ids.append(result.run_id)
        results.update({n: _metadata(result, key(n)) for n in names})
    fast = {"ops": {f"{fleet}__failure_model": {"config": {"search_iterations": 1, "search_folds": 2}}}}
    result = _run(training, instance, "[5/6] dataset, models, champion gate",
                  [key(n) for n in ("training_dataset", "failure_model", "anomaly_model", "champion_gate")], echo,
                  {"iot_mlops/trigger": "demo"}, fast)
    summary.run_ids.append(result.run_id)
    results.update({n: _metadata(result, key(n)) for n in ("failure_model", "champion_gate")})
    result = _run(daily, instance, "[6/6] predictions", [key("predictions")], echo, {"dagster/partition": str(window[-1])})
    summary.run_ids.append(result.run_id)
    results["predictions"] = _metadata(result, key("predictions"))

    telemetry, events, features = results["telemetry"], results["events"], results["features"]
    summary.telemetry_rows = int(telemetry.get("rows_valid", 0))
    summary.quarantined = dict(telemetry.get("quarantined_by_reason", {}))
    summary.event_rows = int(events.get("rows_valid", 0))
    summary.feature_rows = sum(features.get("rows_per_day", {}).values())
    summary.feature_count = int(features.get("feature_count", 0))
    summary.devices_online = int(features.get("devices_online", 0))
    model = results["failure_model"]
    summary.model = f"{model.get('model')} v{model.get('version')}"
    summary.test_macro_f1 = float(model.get("test_macro_f1", float("nan")))
    gate = results["champion_gate"].get(model.get("model"), {})
    summary.gate = f"{'promoted' if gate.get('promoted') else 'kept champion'}: {gate.get('reason')}"
    summary.alerts = int(results["predictions"].get("alerts", 0))
    return summary


def format_summary(summary: DemoSummary) -> str:
    """What the demo did, and where to look next."""
    quarantined = ", ".join(f"{k}={v}" for k, v in sorted(summary.quarantined.items())) or "none"
    example = get_device_features(summary.fleet, "WH-1001")
    example_line = f"  online features of WH-1001 at {example['ts']}" if example else ""
    return "\n".join(
        [
            "",
            f"Fleet {summary.fleet}: {summary.devices} devices, {summary.days[0]}..{summary.days[-1]}",
            f"  telemetry rows valid:      {summary.telemetry_rows:,}",
            f"  telemetry rows quarantined: {quarantined}",
            f"  event rows:                {summary.event_rows:,}",
            f"  feature rows:              {summary.feature_rows:,} ({summary.feature_count} features)",
            f"  devices with online features: {summary.devices_online:,}",
            example_line,
            f"  model:                     {summary.model} (test macro F1 {summary.test_macro_f1:.3f})",
            f"  champion gate:             {summary.gate}",
            f"  alerts on {summary.days[-1]}:       {summary.alerts}",
            f"  lake:                      {get_settings().lake}",
            "",
            "See it in the Dagster UI:  DAGSTER_HOME=$PWD dagster dev   then open http://127.0.0.1:3000",
            f"See runs and the registry: mlflow ui --backend-store-uri {get_settings().tracking_uri}",
        ]
    )
