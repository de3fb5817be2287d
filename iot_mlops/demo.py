"""The main job on embedded defaults: a simulated water-heater fleet through the whole closed loop.

History is ingested, featurized and labelled in range runs and the first models are trained and gated; then
the last nights are replayed as the daemon would run them (nightly schedule, feedback, sensor ticks), with a
drift scenario switched on, so the drift sensor fires once, retrains, and the gate decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from iot_mlops.automation.daemon import running_daemon, wait_for_ticks
from iot_mlops.automation.replay import QUIET, Tick, run_night
from iot_mlops.definitions import build_definitions
from iot_mlops.demo_alerts import alert_trend
from iot_mlops.demo_feedback import NightAlarms, night_alarms, technician_feedback
from iot_mlops.features.online import TABLE as ONLINE_TABLE
from iot_mlops.lake import Lake
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.names import TRAINING, TRIGGER_TAG, daily_job, op_name, training_job
from iot_mlops.profiles import FleetProfile, load_profiles, source_folder
from iot_mlops.profiles.schema import DriftScenarios
from iot_mlops.settings import get_settings
from iot_mlops.sources.landing import simulator_for

TRAIN_SHARE = 0.55  # below the train part of a time split (shares and gaps from the profile)


@dataclass
class Night:
    day: date
    success: bool
    drift_share: float | None
    alerts: int
    feedback: int
    ticks: list[Tick] = field(default_factory=list)
    alarms: int = 0  # alerted devices and components: the visits the night asks for
    false_alarms: int | None = None  # alarms where the simulator's truth has no fault for the technician to find
    devices: int = 0  # devices scored that night


@dataclass
class DemoSummary:
    fleet: str
    days: list[date]
    devices: int
    drift_from: date
    telemetry_rows: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    feature_rows: int = 0
    feature_count: int = 0
    model: str = ""
    test_macro_f1: float = float("nan")
    gate: str = ""
    nights: list[Night] = field(default_factory=list)
    held_out: list[Night] = field(default_factory=list)  # test days of the first training, scored by its champion
    run_ids: list[str] = field(default_factory=list)
    online_devices: int = 0
    online_newest: datetime | None = None  # naive UTC
    alert: dict | None = None  # a stored prediction that raised an alert and has no feedback yet


def earliest_day(profile: FleetProfile) -> date:
    """The first day the demo may simulate: a fixed partitions start, else the simulator's epoch."""
    start = profile.partitions.start
    return start if isinstance(start, date) else profile.source.simulator.epoch


def demo_days(profile: FleetProfile, days: int, end: date | None) -> list[date]:
    """`days` days ending at `end` (default: yesterday, UTC), not before the fleet's earliest day."""
    last = end or (datetime.now(UTC).date() - timedelta(days=1))
    first = max(earliest_day(profile), last - timedelta(days=days - 1))
    if first > last:
        raise ValueError(f"{profile.name}: no days between {earliest_day(profile)} and {last}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def enough_history(profile: FleetProfile, window: list[date], nights: int, min_failures: int = 2,
                   max_days: int = 120) -> list[date]:
    """Extend the window back until every component fails `min_failures` times in the first training's train part."""
    schedule = simulator_for(profile).failure_schedule()
    failures = schedule.loc[~schedule["averted"]]
    days = failures["failure_time"].dt.date
    while True:
        history = window[:-nights]
        train_end = history[0] + timedelta(days=int(len(history) * TRAIN_SHARE))
        train = failures[(days >= history[0]) & (days < train_end)]["component"].value_counts()
        if all(train.get(c, 0) >= min_failures for c in profile.components) or len(window) >= max_days:
            return window
        start = max(earliest_day(profile), window[0] - timedelta(days=7))
        if start == window[0]:
            return window
        window = [start + timedelta(days=i) for i in range((window[-1] - start).days + 1)]


def simulated(profile: FleetProfile, devices: int, drift_from: date | None = None) -> FleetProfile:
    """The profile with the demo's fleet size and, from `drift_from`, a batch of new-model heaters half the fleet's size."""
    drift = (DriftScenarios(new_model_batch_from=drift_from, new_model_batch_size=devices // 2) if drift_from
             else profile.source.simulator.drift)
    spec = profile.source.simulator.model_copy(update={"devices": devices, "drift": drift})
    return profile.model_copy(update={"source": profile.source.model_copy(update={"simulator": spec})})


def simulate(profile: FleetProfile, days: list[date], echo: Callable[[str], None]) -> None:
    """Write the fleet's landing files for these days, as its gateways would."""
    simulator = simulator_for(profile)
    folder = source_folder(profile, get_settings().profiles_dir, get_settings().landing)
    echo(f"  landing files of {profile.name} go to {folder.resolve()}")
    for day in days:
        started = time.perf_counter()
        simulator.write_landing(day, folder)
        echo(f"  simulated {day}: {profile.source.simulator.devices} devices ({time.perf_counter() - started:.1f}s)")


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()} if events else {}


def _run(job, instance, label: str, keys: list[dg.AssetKey], echo, tags=None, run_config=None,
         partition_key: str | None = None) -> dg.ExecuteInProcessResult:
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, asset_selection=keys, tags=tags or {}, partition_key=partition_key,
                                    run_config={**QUIET, **(run_config or {})})
    if not result.success:
        raise RuntimeError(f"{label} failed; see run {result.run_id} in the Dagster UI")
    echo(f"{label}: done in {time.perf_counter() - started:.1f}s (run {result.run_id[:8]})")
    return result


def daemon_log() -> Path:
    return get_settings().data_dir.resolve() / "logs" / "dagster-daemon.log"


def daemon_env(fleet: str) -> dict[str, str]:
    """The demo's search budget for retraining runs the daemon starts, as `training_config` gives the first one."""
    budget = training_config(fleet)["ops"][op_name(fleet, "failure_model")]["config"]
    return {"IOT_MLOPS_RETRAINING_SEARCH_ITERATIONS": str(budget["search_iterations"]),
            "IOT_MLOPS_RETRAINING_SEARCH_FOLDS": str(budget["search_folds"])}


def training_config(fleet: str) -> dict:
    """One hyperparameter candidate and two folds: the demo favours time over a search."""
    return {"ops": {op_name(fleet, "failure_model"): {"config": {"search_iterations": 1, "search_folds": 2}}}}


def run_demo(devices: int = 250, days: int = 21, end: date | None = None, fleet: str = "water_heaters", nights: int = 5,
             drift_days: int = 4, echo: Callable[[str], None] = print) -> DemoSummary:
    """Simulate with drift in the last `drift_days`, build history and first models, then replay the last `nights`."""
    settings = get_settings()
    profile = load_profiles(settings.profiles_dir)[fleet]
    if profile.source.kind != "simulator":
        raise ValueError(f"{fleet} is not a simulated fleet")
    sim_profile = simulated(profile, devices, None)
    window = enough_history(sim_profile, demo_days(profile, days, end), nights)
    if not 0 < drift_days <= nights < len(window) - 2:
        raise ValueError(f"need 0 < drift_days ({drift_days}) <= nights ({nights}) < days - 2 ({len(window) - 2})")
    history, replay, drift_from = window[:-nights], window[-nights:], window[-drift_days]
    summary = DemoSummary(fleet=fleet, days=window, devices=devices, drift_from=drift_from)
    echo(f"[1/5] simulating {fleet}: {devices} devices x {len(window)} days ({window[0]}..{window[-1]}); "
         f"from {drift_from} a batch of {devices // 2} heaters of a new model joins the fleet (drift)")
    sim_profile = simulated(profile, devices, drift_from)
    simulate(sim_profile, window, echo)
    schedule = simulator_for(sim_profile).failure_schedule()  # the truth each night's alarms are judged against

    defs = build_definitions()
    daily, training = defs.resolve_job_def(daily_job(fleet)), defs.resolve_job_def(training_job(fleet))
    instance = dg.DagsterInstance.get()
    key = lambda name: dg.AssetKey([fleet, name])  # noqa: E731
    span = {"dagster/asset_partition_range_start": str(history[0]), "dagster/asset_partition_range_end": str(history[-1])}
    results = {}
    for label, names, tags in [
        ("[2/5] history: devices, telemetry, events, data quality", ["devices", "telemetry", "events", "data_quality"], span),
        ("[2/5] history: features and labels", ["features", "labels"], span),
    ]:
        result = _run(daily, instance, label, [key(n) for n in names], echo, tags)
        summary.run_ids.append(result.run_id)
        results.update({n: _metadata(result, key(n)) for n in names})
    result = _run(training, instance, "[3/5] first training: dataset, models, champion gate",
                  [key(n) for n in TRAINING], echo, {TRIGGER_TAG: "demo"}, training_config(fleet))
    summary.run_ids.append(result.run_id)
    results.update({n: _metadata(result, key(n)) for n in ("failure_model", "champion_gate", "training_dataset")})
    _summarize_history(summary, results)
    test_days = [d for d in history if d >= _test_start(results["training_dataset"])]
    if test_days:
        result = _run(daily, instance, f"[3/5] the champion's alerts on the {len(test_days)} test days it did not train on",
                      [key("predictions")], echo, {**span, "dagster/asset_partition_range_start": str(test_days[0])})
        summary.run_ids.append(result.run_id)
        summary.held_out = [_judged(Night(d, True, None, 0, 0), sim_profile, schedule) for d in test_days]

    echo(f"[4/5] replaying {len(replay)} nights: the nightly schedule's runs and technician feedback here, the "
         "retraining sensors ticking in the Dagster daemon")
    with running_daemon(fleet, daemon_log(), env=daemon_env(fleet)) as daemon:
        since = time.time()
        for day in replay:
            started = time.perf_counter()
            runs = run_night(defs, instance, fleet, day)
            summary.run_ids.extend(r.run_id for r in runs)
            metadata = {n: next((_metadata(r, key(n)) for r in runs if _metadata(r, key(n))), {}) for n in ("drift_report", "predictions")}
            given = technician_feedback(sim_profile, day)
            ticks = wait_for_ticks(instance, fleet, since, time.time(), daemon)
            since = time.time()
            summary.run_ids.extend(t.run_id for t in ticks if t.run_id)
            night = _judged(Night(day, all(r.success for r in runs), metadata["drift_report"].get("drift_share"),
                                  int(metadata["predictions"].get("alerts", 0)), given, ticks), sim_profile, schedule)
            summary.nights.append(night)
            echo(_night_line(night, time.perf_counter() - started))
    today = window[-1] + timedelta(days=1)
    if today == datetime.now(UTC).date():
        until = landed_until(sim_profile, today)
        echo(f"[5/5] today so far: {fleet} readings up to {until:%H:%M} UTC land; their features refresh the online "
             "features the API serves")
        simulator_for(sim_profile).write_landing(today, source_folder(profile, settings.profiles_dir, settings.landing), until)
        result = _run(daily, instance, "[5/5] today: telemetry, events, features", [key(n) for n in ("telemetry", "events", "features")],
                      echo, partition_key=today.isoformat())
        summary.run_ids.append(result.run_id)
        online = pd.read_parquet(Lake(settings.lake).table_file(fleet, ONLINE_TABLE), columns=["ts"])["ts"]
        summary.online_devices, summary.online_newest = len(online), online.max().to_pydatetime()
    summary.alert = StoreResource.from_settings().predictions().newest_alert(fleet)
    return summary


def landed_until(profile: FleetProfile, day: date, now: datetime | None = None) -> datetime:
    """The start of the current feature step (naive UTC): readings before it have all arrived, so its features are whole."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    midnight, step = datetime.combine(day, datetime.min.time()), profile.features.step
    return min(midnight + (now - midnight) // step * step, midnight + timedelta(days=1))


def _summarize_history(summary: DemoSummary, results: dict) -> None:
    telemetry, features, model = results["telemetry"], results["features"], results["failure_model"]
    summary.telemetry_rows = int(telemetry.get("rows_valid", 0))
    summary.quarantined = dict(telemetry.get("quarantined_by_reason", {}))
    summary.feature_rows = sum(features.get("rows_per_day", {}).values())
    summary.feature_count = int(features.get("feature_count", 0))
    summary.model = f"{model.get('model')} v{model.get('version')}"
    summary.test_macro_f1 = float(model.get("test_macro_f1", float("nan")))
    gate = results["champion_gate"].get(model.get("model"), {})
    summary.gate = f"{'promoted' if gate.get('promoted') else 'kept champion'}: {gate.get('reason')}"


def _night_line(night: Night, seconds: float) -> str:
    share = "-" if night.drift_share is None else f"{night.drift_share:.2f}"
    lines = [f"  night of {night.day}: {'ok' if night.success else 'FAILED'} in {seconds:.0f}s, drift share {share}, "
             f"{night.alerts} alerts{_false(night)}, {night.feedback} feedback records"]
    for tick in night.ticks:
        if tick.action == "requested":
            outcome = "succeeded" if tick.run_success else "FAILED"
            lines.append(f"    {tick.sensor}: RETRAINING run {tick.run_id[:8]} {outcome} ({tick.reason})")
        elif tick.action == "failed":
            lines.append(f"    {tick.sensor}: tick FAILED ({tick.reason}); see the sensor's page in the Dagster UI")
        elif "skipped:" in tick.reason:
            lines.append(f"    {tick.sensor}: {tick.reason}")
    return "\n".join(lines)


def _judged(night: Night, profile: FleetProfile, schedule: pd.DataFrame) -> Night:
    judged: NightAlarms = night_alarms(profile, night.day, schedule)
    night.alerts, night.alarms, night.false_alarms, night.devices = judged.alerts, judged.alarms, judged.false_alarms, judged.devices
    return night


def _test_start(dataset: dict) -> date:
    return datetime.fromisoformat(dataset["boundaries"]["test_start"]).date()


def _false(night: Night) -> str:
    false = "" if night.false_alarms is None else f", {night.false_alarms} false (no fault found)"
    return f" = {night.alarms} alarms on {night.devices} devices{false}"


def _tracking_uri_to_print() -> str:
    # A tracking URI set in the environment may hold a password: print the variable, which the shell expands.
    return '"$IOT_MLOPS_MLFLOW_TRACKING_URI"' if get_settings().mlflow_tracking_uri else get_settings().tracking_uri


def format_summary(summary: DemoSummary) -> str:
    """What the demo did, the decision log, and where to look next."""
    from iot_mlops.automation.cli import format_decisions
    from iot_mlops.automation.retraining import gate_verdicts
    from iot_mlops.registry.resource import RegistryResource

    quarantined = ", ".join(f"{k}={v}" for k, v in sorted(summary.quarantined.items())) or "none"
    log = RegistryResource.from_settings().decision_log()
    decisions = log.list(fleet=summary.fleet)
    return "\n".join([
        "",
        f"Fleet {summary.fleet}: {summary.devices} devices, {summary.days[0]}..{summary.days[-1]}, drift from {summary.drift_from}",
        f"  history telemetry rows:  {summary.telemetry_rows:,} valid; quarantined: {quarantined}",
        f"  history feature rows:    {summary.feature_rows:,} ({summary.feature_count} features)",
        f"  first model:             {summary.model} (test macro F1 {summary.test_macro_f1:.3f}); {summary.gate}",
        f"  lake:                    {get_settings().lake}",
        f"  online features:         {_online_line(summary)}",
        "",
        *alert_trend(summary.nights, summary.drift_from, lambda run_id: gate_verdicts(log, run_id), summary.held_out),
        "",
        "Decision log (iot-mlops decisions):",
        format_decisions(decisions) if decisions else "  (empty)",
        "",
        "See it in the Dagster UI:  DAGSTER_HOME=$PWD dagster dev   then open http://127.0.0.1:3000",
        f"See runs and the registry: mlflow ui --backend-store-uri {_tracking_uri_to_print()}",
        "  (its UI opens in the GenAI view: click \"Model training\" at the top of the sidebar, then \"Models\")",
        *alert_lines(summary.alert),
    ])


def _online_line(summary: DemoSummary) -> str:
    if summary.online_newest is None:
        return "not refreshed today (the demo ended before yesterday): predictions are served with \"stale\": true"
    return f"{summary.online_devices} devices, newest row {summary.online_newest:%Y-%m-%d %H:%M} UTC"


def alert_lines(alert: dict | None) -> list[str]:
    """An alerting prediction without feedback, and the commands that send false_positive feedback on it."""
    if alert is None:
        return ["", "No prediction raised an alert, so there is none to send false_positive feedback on."]
    pid, component = alert["prediction_id"], alert["predicted_component"]
    p = (alert.get("probabilities") or {}).get(component)
    probability = f" (p={p:.2f})" if p is not None else ""
    body = '{"type": "false_positive", "rating": 2, "source": "technician", "comment": "no fault found"}'
    return [
        "",
        (f"An alert without feedback: device {alert['device_id']}, {component}{probability} at {alert['ts']:%Y-%m-%d %H:%M} UTC, "
         f"prediction {pid}"),
        "Say it was a false alarm (the CLI, or the API with an operator key as in the README's Serving section):",
        f'  iot-mlops feedback add {pid} --type false_positive --rating 2 --comment "no fault found" --source technician',
        f"  curl -H \"$H\" -H 'content-type: application/json' $API/api/predictions/{pid}/feedback -d '{body}'",
    ]
