"""Names every layer shares: assets of each job, job, schedule and sensor names, run tags, registered models.

Plain strings, so the service and the command line use them without loading Dagster; an asset's key is
[fleet, asset name] (`iot_mlops.partitions.FleetContext.key`).
"""

DAILY = ("devices", "telemetry", "events", "features", "labels", "predictions", "drift_report", "data_quality",
         "feedback_summary", "model_performance")
NIGHTLY = tuple(name for name in DAILY if name != "labels")  # labels wait until their horizon has matured
TRAINING = ("training_dataset", "failure_model", "anomaly_model", "champion_gate")
RETRAINING = ("training_dataset", "failure_model", "champion_gate")

TRIGGER_TAG = "iot_mlops/trigger"  # what started a run: a sensor's name, "manual" or "demo"
REASON_TAG = "iot_mlops/reason"
DECISION_TAG = "iot_mlops/decision_id"  # the decision-log row that started the run
ACTOR_TAG = "iot_mlops/actor"  # who launched a manual retraining (set by the CLI)
FLEET_TAG = "iot_mlops/retrain_fleet"  # deploy/dagster.yaml allows one queued-or-running retraining per value
NIGHTLY_TAG = "iot_mlops/nightly"
SCHEDULE_TAG = "dagster/schedule_name"  # the tag Dagster's scheduler puts on its runs; the schedule's page lists them

DEFINITIONS_MODULE = "iot_mlops.definitions"  # the code location the workspace loads


def daily_job(fleet: str) -> str:
    return f"{fleet}_daily"


def training_job(fleet: str) -> str:
    return f"{fleet}_training"


def retraining_job(fleet: str) -> str:
    return f"{fleet}_retraining"


def nightly_schedule_name(fleet: str) -> str:
    return f"{fleet}_nightly"


def sensor_name(fleet: str, condition: str) -> str:
    return f"{fleet}_{condition}"


def op_name(fleet: str, asset: str) -> str:
    """The op of a fleet's asset, as run config names it."""
    return f"{fleet}__{asset}"


def model_name(fleet: str, kind: str) -> str:
    """The registered model of a fleet's failure (its prediction type) or anomaly model."""
    return f"{fleet}_{kind}"
