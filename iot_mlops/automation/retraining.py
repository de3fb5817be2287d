"""Turn a sensor's condition into a retraining decision, recorded in the decision log with its figures."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from iot_mlops.automation.policy import Condition, Verdict, decide
from iot_mlops.lake import Lake
from iot_mlops.names import ACTOR_TAG, DECISION_TAG, REASON_TAG, TRIGGER_TAG, model_name, op_name, retraining_job
from iot_mlops.opstore.decisions import DecisionLog
from iot_mlops.profiles import FleetProfile
from iot_mlops.training.dataset import DatasetError, load_dataset_report


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    decision_id: int | None  # the decision-log row written, if any

    @property
    def tags(self) -> dict[str, str]:
        """Tags of the run a trigger starts: which sensor, why, and which decision-log row."""
        return {TRIGGER_TAG: self.verdict.condition.sensor, REASON_TAG: self.verdict.reason[:255],
                DECISION_TAG: str(self.decision_id)}


def new_feature_days(lake: Lake, fleet: str) -> int:
    """Feature partitions newer than the last training dataset's label window."""
    days = lake.partitions(fleet, "features")
    try:
        end = load_dataset_report(lake, fleet).window[1]
    except DatasetError:
        return len(days)
    return sum(1 for day in days if day > end.date())


def evaluate(condition: Condition, profile: FleetProfile, lake: Lake, log: DecisionLog, *, running: int,
             now: datetime | None = None) -> Outcome:
    """Decide, and log a trigger or a skip; an identical skip already logged last by this sensor is not repeated."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    policy, fleet = profile.monitoring.retraining, profile.name
    history = log.list(fleet=fleet, actions={"retrain_triggered", "retrain_skipped"})
    triggers = [d for d in history if d.action == "retrain_triggered"]
    verdict = decide(condition, policy, now=now, triggers=triggers, running=running, new_days=new_feature_days(lake, fleet))
    if verdict.action == "none":
        return Outcome(verdict, None)
    name = model_name(fleet, profile.target.prediction_type)
    details = {"sensor": condition.sensor, "condition": condition.key, "figures": condition.figures}
    if verdict.action == "skip":
        previous = [d for d in history if d.actor == condition.sensor]
        if previous and previous[-1].action == "retrain_skipped" and previous[-1].reason == verdict.reason:
            return Outcome(verdict, previous[-1].id)
        return Outcome(verdict, log.record(fleet, "retrain_skipped", verdict.reason, condition.sensor, model_name=name, details=details))
    details["run_key"] = verdict.run_key
    return Outcome(verdict, log.record(fleet, "retrain_triggered", verdict.reason, condition.sensor, model_name=name, details=details))


def last_fired_day(log: DecisionLog, fleet: str, sensor: str) -> str | None:
    """The partition day on which `sensor` last triggered a retraining, from the decision log."""
    fired = [d for d in log.list(fleet=fleet, actions={"retrain_triggered"}) if d.actor == sensor]
    return ((fired[-1].details or {}).get("figures") or {}).get("day") if fired else None


def manual_retraining(defs, fleet: str, reason: str, actor: str, instance, on_event=None):
    """Run `<fleet>_retraining` in this process with its reason; the run's first step logs the trigger.

    The decision is written inside the run (as when launched from the UI), so no trigger is ever
    logged for a run that does not exist. `on_event(step_key, event_type, seconds)` reports progress.
    """
    job = defs.resolve_job_def(retraining_job(fleet))
    run_id = str(uuid.uuid4())  # known before the run starts, so progress can follow it
    config = {"ops": {op_name(fleet, "training_dataset"): {"config": {"reason": reason}}}}
    with _progress(instance, run_id, on_event):
        return job.execute_in_process(run_config=config, instance=instance, run_id=run_id, raise_on_error=False,
                                      tags={TRIGGER_TAG: "manual", ACTOR_TAG: actor})


@contextmanager
def _progress(instance, run_id: str, on_event):
    """Poll the run's step events from the instance while it executes, and pass each new one on."""
    import dagster as dg

    if on_event is None:
        yield
        return
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    done, seen, started = threading.Event(), set(), {}

    def poll() -> None:
        while True:
            stopping = done.wait(1.0)
            for record in instance.all_logs(run_id, of_type=kinds):
                key = (record.step_key, record.dagster_event.event_type_value)
                if key in seen:
                    continue
                seen.add(key)
                if record.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                    started[record.step_key] = record.timestamp
                on_event(record.step_key, record.dagster_event.event_type_value,
                         record.timestamp - started.get(record.step_key, record.timestamp))
            if stopping:
                return

    thread = threading.Thread(target=poll, name="retraining-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def gate_verdicts(log: DecisionLog, run_id: str) -> list[str]:
    """One line per model the run's gate decided on: promoted or rejected, and why."""
    lines = []
    for d in log.list(run_id=run_id, actions={"promoted", "rejected"}):
        kept = f"champion was v{d.from_version}" if d.action == "promoted" else f"v{d.from_version} stays champion"
        lines.append(f"{d.model_name} v{d.to_version} {d.action} ({kept if d.from_version else 'no champion before'}): {d.reason}")
    return lines
