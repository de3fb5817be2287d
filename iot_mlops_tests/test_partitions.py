"""Daily partitions from the profile, with `start: auto` and `end: auto` found from the telemetry itself."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from iot_mlops.definitions import fleet_definitions
from iot_mlops.demo import simulated
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake import Lake
from iot_mlops.lake.resource import LakeResource
from iot_mlops.partitions import FleetContext, daily_partitions, last_source_day, partition_start
from iot_mlops.profiles import load_profile, source_folder
from iot_mlops.settings import get_settings
from iot_mlops.sources.landing import simulator_for
from iot_mlops_tests.fleet import DAYS, PROFILES, START, Fleet, clean_day, reading, stamp


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
    assert partitions[-1] == datetime.now(UTC).date().isoformat()  # the day in progress is one too


def _heaters():
    """The shipped water-heater profile (`start: auto`) with 3 devices, and its empty landing folder."""
    profile = simulated(load_profile(PROFILES / "water_heaters.yaml"), 3)
    assert profile.partitions.start == "auto"
    return profile, source_folder(profile, PROFILES, get_settings().landing)


def test_auto_start_follows_the_simulated_data():
    profile, folder = _heaters()
    first = date(2026, 3, 10)
    for day in (first + timedelta(days=i) for i in range(3)):
        simulator_for(profile).write_landing(day, folder)
    assert partition_start(profile, PROFILES) == first
    ctx = FleetContext.of(profile, PROFILES)
    assert ctx.profile.partitions.start == first
    defs = fleet_definitions(ctx)
    starts = {a.partitions_def.get_first_partition_key() for a in defs.assets if getattr(a, "partitions_def", None)}
    assert starts == {first.isoformat()}
    # Ingestion builds its SQL with the resolved date, never the word `auto`.
    result = dg.materialize(ingestion_assets(ctx), selection=[f"{profile.name}/devices"],
                            resources={"lake": LakeResource.from_settings()}, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    devices = pd.read_parquet(Lake(get_settings().lake).table_file(profile.name, "devices"))
    assert len(devices) == 3

    # Data landing for an earlier day moves the start back.
    simulator_for(profile).write_landing(first - timedelta(days=2), folder)
    assert daily_partitions(profile, PROFILES).get_first_partition_key() == (first - timedelta(days=2)).isoformat()


def test_auto_start_without_data_or_with_only_far_future_files_is_today():
    profile, folder = _heaters()
    today = datetime.now(UTC).date()
    assert partition_start(profile, PROFILES) == today
    far = folder / "telemetry" / "date=2099-01-01" / "telemetry.parquet"
    far.parent.mkdir(parents=True)
    far.write_bytes(b"x")
    assert partition_start(profile, PROFILES) == today
    assert daily_partitions(profile, PROFILES).get_partition_keys() == [today.isoformat()]
