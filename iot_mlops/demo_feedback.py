"""Technician feedback in the demo: a few alerts of each night are checked against what the simulator knows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pandas as pd

from iot_mlops.lake import Lake
from iot_mlops.monitoring.resource import StoreResource
from iot_mlops.profiles import FleetProfile
from iot_mlops.settings import get_settings
from iot_mlops.sources.landing import simulator_for

PER_NIGHT = 4  # a technician visits a handful of alerted devices a day


def truth(profile: FleetProfile) -> pd.DataFrame:
    """Failures that really happen (not averted by maintenance): device_id, component, failure_time."""
    schedule = simulator_for(profile).failure_schedule()
    return schedule.loc[~schedule["averted"], ["device_id", "component", "failure_time"]]


def _day_predictions(profile: FleetProfile, day: date) -> pd.DataFrame:
    file = Lake(get_settings().lake).partition_file(profile.name, "predictions", day)
    if not file.is_file():
        return pd.DataFrame(columns=["prediction_id", "device_id", "ts", "predicted_component"])
    return pd.read_parquet(file, columns=["prediction_id", "device_id", "ts", "predicted_component"])


def _alerting(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions[predictions["predicted_component"] != "none"].sort_values(["ts", "device_id"])


def _day_alerts(profile: FleetProfile, day: date) -> pd.DataFrame:
    return _alerting(_day_predictions(profile, day))


@dataclass(frozen=True)
class NightAlarms:
    """A night's alerting rows, the alarms they raise (one per device and component) and the false ones."""

    alerts: int
    alarms: int
    false_alarms: int
    devices: int


def judge_alarms(alerts: pd.DataFrame, schedule: pd.DataFrame, horizon: timedelta) -> pd.DataFrame:
    """One row per alerted device and component, `false` when none of its alerts found a fault, by the simulator's truth.

    A technician sent on an alert finds a fault while the component wears towards a failure (from its build-up, or
    the horizon before the failure, until the failure or the maintenance that averted it) or while the device is down
    after a failure: an early catch is no false alarm.
    """
    alarms = alerts[["device_id", "predicted_component"]].drop_duplicates()
    j = alerts.merge(schedule, on="device_id", how="inner")
    wearing = ((j["component"] == j["predicted_component"])
               & (j["ts"] >= j["buildup_start"].clip(upper=j["failure_time"] - horizon))
               & (j["ts"] < j["failure_time"].where(~j["averted"], j["end_time"])))
    down = ~j["averted"] & (j["ts"] >= j["failure_time"]) & (j["ts"] < j["end_time"])
    hit = j.loc[wearing | down, ["device_id", "predicted_component"]].drop_duplicates().assign(found=True)
    judged = alarms.merge(hit, on=["device_id", "predicted_component"], how="left")
    return judged.assign(false=judged["found"].isna()).drop(columns="found").reset_index(drop=True)


def night_alarms(profile: FleetProfile, day: date, schedule: pd.DataFrame) -> NightAlarms:
    """The night's alarms judged against the simulator's `failure_schedule()`, and the devices scored that night."""
    predictions = _day_predictions(profile, day)
    alerts = _alerting(predictions)
    judged = judge_alarms(alerts, schedule, profile.target.horizon)
    return NightAlarms(len(alerts), len(judged), int(judged["false"].sum()), predictions["device_id"].nunique())


def technician_feedback(profile: FleetProfile, day: date, per_night: int = PER_NIGHT) -> int:
    """Feedback on the first alert of `per_night` alerted devices of `day`: correct if the component failed within the horizon."""
    alerts = _day_alerts(profile, day)
    visits = alerts.drop_duplicates("device_id").head(per_night)
    failures = truth(profile)
    store = StoreResource.from_settings().feedback()
    received = datetime.combine(day, time(20, 0))
    for visit in visits.itertuples():
        ts = pd.Timestamp(visit.ts)
        hit = failures[(failures["device_id"] == visit.device_id) & (failures["component"] == visit.predicted_component)
                       & (failures["failure_time"] >= ts) & (failures["failure_time"] < ts + profile.target.horizon)]
        record = {"type": "correct" if len(hit) else "false_positive", "rating": 5 if len(hit) else 2, "source": "technician",
                  "comment": "component worn, replaced" if len(hit) else "inspected, no fault found"}
        if len(hit):
            record |= {"outcome_component": visit.predicted_component, "outcome_at": hit["failure_time"].iloc[0].to_pydatetime()}
        store.add(visit.prediction_id, record, received_at=received)
    return len(visits)

