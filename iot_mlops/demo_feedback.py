"""Technician feedback in the demo: a few alerts of each night are checked against what the simulator knows."""

from __future__ import annotations

from datetime import date, datetime, time

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


def _day_alerts(profile: FleetProfile, day: date) -> pd.DataFrame:
    file = Lake(get_settings().lake).partition_file(profile.name, "predictions", day)
    if not file.is_file():
        return pd.DataFrame(columns=["prediction_id", "device_id", "ts", "predicted_component"])
    predictions = pd.read_parquet(file, columns=["prediction_id", "device_id", "ts", "predicted_component"])
    return predictions[predictions["predicted_component"] != "none"].sort_values(["ts", "device_id"])


def false_alerts(profile: FleetProfile, day: date) -> int:
    """Alerting predictions of `day` whose component does not fail within the horizon after them, by the simulator's truth."""
    alerts = _day_alerts(profile, day)
    failures = truth(profile).rename(columns={"component": "predicted_component"})
    joined = alerts.merge(failures, on=["device_id", "predicted_component"], how="left")
    ahead = (joined["failure_time"] >= joined["ts"]) & (joined["failure_time"] < joined["ts"] + profile.target.horizon)
    return int(len(alerts) - joined.loc[ahead, "prediction_id"].nunique())


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

