"""Turn a sensor's condition into a retraining decision, recorded in the decision log with its figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from iot_mlops.automation.policy import Condition, Verdict, decide
from iot_mlops.lake import Lake
from iot_mlops.profiles import FleetProfile
from iot_mlops.registry.decisions import DecisionLog
from iot_mlops.training.assets import DECISION_TAG, REASON_TAG, TRIGGER_TAG
from iot_mlops.training.dataset import DatasetError, load_dataset_report
from iot_mlops.training.runs import model_name


def retraining_job_name(fleet: str) -> str:
    return f"{fleet}_retraining"


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
    name = model_name(profile, profile.target.prediction_type)
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


def manual_retraining(fleet: str, reason: str, actor: str):
    """Log a manual trigger, then run `<fleet>_retraining` in this process on the current instance."""
    import dagster as dg

    from iot_mlops.definitions import build_definitions
    from iot_mlops.profiles import load_profiles
    from iot_mlops.registry.resource import RegistryResource
    from iot_mlops.settings import get_settings

    profile = load_profiles(get_settings().profiles_dir)[fleet]
    log = RegistryResource.from_settings().decision_log()
    condition = Condition("manual", True, reason, key=None, figures={})
    decision_id = log.record(fleet, "retrain_triggered", reason, actor, model_name=model_name(profile, profile.target.prediction_type),
                             details={"sensor": "manual"})
    tags = Outcome(Verdict("trigger", reason, condition), decision_id).tags | {TRIGGER_TAG: "manual"}
    job = build_definitions().resolve_job_def(retraining_job_name(fleet))
    return decision_id, job.execute_in_process(instance=dg.DagsterInstance.get(), tags=tags, raise_on_error=False)
