"""The nightly schedule: yesterday's partitions without labels, then the labels whose horizon has just matured."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from iot_mlops.automation.schedules import nightly_requests, nightly_schedule
from iot_mlops.names import NIGHTLY
from iot_mlops.partitions import FleetContext
from iot_mlops_tests.fleet import DAYS, Fleet


def test_night_requests_yesterday_and_the_matured_labels(fleet: Fleet):
    profile = fleet.profile()  # 24-hour horizon: the labels of the day before yesterday have matured
    requests = nightly_requests(FleetContext.of(profile, fleet.profile_dir), datetime.combine(DAYS[3], datetime.min.time(), UTC).replace(hour=2))
    assert [(r.run_key, r.partition_key) for r in requests] == [
        (f"nightly:{DAYS[2]}", str(DAYS[2])), (f"nightly-labels:{DAYS[1]}", str(DAYS[1]))]
    daily, labels = requests
    assert {k.path[-1] for k in daily.asset_selection} == set(NIGHTLY) and "labels" not in NIGHTLY
    assert [k.path[-1] for k in labels.asset_selection] == ["labels"]


def test_nothing_outside_the_fleets_partitions(fleet: Fleet):
    assert nightly_requests(FleetContext.of(fleet.profile(), fleet.profile_dir), datetime(2023, 6, 1, 2, tzinfo=UTC)) == []


def test_schedule_uses_the_profiles_cron_and_timezone(fleet: Fleet):
    fleet.spec["monitoring"] = {"schedule": {"cron": "30 3 * * *", "timezone": "Europe/Berlin"}}
    profile = fleet.write_profile()
    schedule = nightly_schedule(FleetContext.of(profile, fleet.profile_dir))
    assert isinstance(schedule, dg.ScheduleDefinition)
    assert schedule.cron_schedule == "30 3 * * *" and schedule.execution_timezone == "Europe/Berlin"
