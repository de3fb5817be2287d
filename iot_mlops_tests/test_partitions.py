"""Daily partitions from the profile, with `end: auto` found from the telemetry itself."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from iot_mlops.partitions import daily_partitions, last_source_day
from iot_mlops.profiles import source_folder
from iot_mlops_tests.fleet import DAYS, START, Fleet, clean_day, reading, stamp


def keys(fleet: Fleet) -> list[str]:
    return daily_partitions(fleet.profile(), fleet.profile_dir).get_partition_keys()


def test_fixed_end_is_inclusive(fleet: Fleet):
    assert keys(fleet) == [d.isoformat() for d in DAYS]


@pytest.mark.parametrize("layout", ["telemetry/{date}.csv", "telemetry/date={date}/part.csv", "{date}/telemetry.csv"])
def test_auto_end_from_daily_files(fleet: Fleet, layout: str):
    for day in DAYS:
        fleet.path("telemetry", day).unlink()
    fleet.spec["source"]["telemetry"]["path"] = layout
    fleet.spec["partitions"]["end"] = "auto"
    fleet.write_profile()
    for day in DAYS[:3]:
        fleet.write("telemetry", clean_day(day), day)
    stray = fleet.path("telemetry", DAYS[0])
    for name in ("notes.csv", "2024-13-45.csv", "date=2099-01-01"):
        (stray.parent / name).write_text("x\n")
    assert keys(fleet) == [d.isoformat() for d in DAYS[:3]]


def test_auto_end_from_one_table(fleet: Fleet):
    fleet.spec["source"]["telemetry"]["path"] = "telemetry.parquet"
    fleet.spec["partitions"]["end"] = "auto"
    profile = fleet.write_profile()
    rows = [reading("d1", stamp(DAYS[0], 5)), reading("d2", stamp(DAYS[2], 23, 59))]
    fleet.write("telemetry", [{**r, "time": pd.Timestamp(r["time"])} for r in rows])
    assert last_source_day(profile, source_folder(profile, fleet.profile_dir, fleet.landing_root)) == DAYS[2]
    assert keys(fleet)[-1] == DAYS[2].isoformat()


def test_auto_end_without_data_or_with_data_before_start_shows_the_first_day(fleet: Fleet):
    fleet.spec["source"]["telemetry"]["path"] = "telemetry.parquet"
    fleet.spec["partitions"]["end"] = "auto"
    fleet.write_profile()
    assert keys(fleet) == [START.isoformat()]
    early = reading("d1", stamp(START - timedelta(days=10), 3))
    fleet.write("telemetry", [{**early, "time": pd.Timestamp(early["time"])}])
    assert keys(fleet) == [START.isoformat()]


def test_open_end_runs_to_today(fleet: Fleet):
    fleet.spec["partitions"].pop("end")
    fleet.write_profile()
    partitions = keys(fleet)
    assert partitions[0] == START.isoformat()
    assert date.fromisoformat(partitions[-1]) >= date.today() - timedelta(days=2)
