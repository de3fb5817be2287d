"""A day's valid rows and quarantine change together: an ingestion killed at any step of the commit leaves the old day or the new."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from iot_mlops.ingestion.ingest import ingest_devices, ingest_telemetry
from iot_mlops.lake import DATA_FILE, QUARANTINE_FILE, Lake, connect
from iot_mlops.lake.atomic import TMP_PREFIX
from iot_mlops.lake.commit import STEPS, VERSION_PREFIX
from iot_mlops.profiles import source_folder
from iot_mlops_tests.fleet import DAYS, Fleet, clean_day, reading, stamp

RUN_DAYS = DAYS[:2]
CRASHED = 70

# Ingests RUN_DAYS and dies at the nth `step` of the commit of the last day.
CRASHING_RUN = """
import os, sys
from datetime import date
from pathlib import Path
from iot_mlops.ingestion.ingest import ingest_telemetry
from iot_mlops.lake import Lake, commit, connect
from iot_mlops.profiles import load_profile, source_folder

lake_root, profile_file, landing, step, nth, *days = sys.argv[1:]
seen = []

def crash(at, link):
    if link.name == f"date={days[-1]}":
        seen.append(at)
        if at == step and seen.count(at) == int(nth):
            os._exit(70)

commit.crash_hook = crash
profile = load_profile(Path(profile_file))
folder = source_folder(profile, Path(profile_file).parent, Path(landing))
with connect(1) as con:
    ingest_telemetry(con, Lake(Path(lake_root)), profile, folder, [date.fromisoformat(d) for d in days])
"""


def old_rows(day: date) -> list[dict]:
    return [*clean_day(day), {**reading("d1", stamp(day, 1)), "temp": "hot"}, {**reading("ghost", stamp(day, 2))}]


def new_rows(day: date) -> list[dict]:
    rows = clean_day(day)[6:]
    bad = [{"temp": 250}, {"pressure": ""}, {"time": "yesterday"}, {"device": "ghost"}]
    return [*rows, *({**reading("d2", stamp(day, 3)), **change} for change in bad), dict(rows[0])]


def write_sources(fleet: Fleet, rows) -> dict[date, int]:
    """Write each run day's telemetry; returns the source rows per day."""
    for day in RUN_DAYS:
        fleet.write("telemetry", rows(day), day)
    return {day: len(rows(day)) for day in RUN_DAYS}


def ingest(fleet: Fleet, lake_root: Path) -> None:
    profile, lake = fleet.profile(), Lake(lake_root)
    folder = source_folder(profile, fleet.profile_dir, fleet.landing_root)
    with connect(1) as con:
        if not lake.table_file(fleet.name, "devices").is_file():
            ingest_devices(con, lake, profile, folder)
        ingest_telemetry(con, lake, profile, folder, RUN_DAYS)


def day_files(lake_root: Path, fleet: Fleet, day: date) -> dict[str, bytes]:
    """The day's valid and quarantine files as one version holds them."""
    folder = Lake(lake_root).partition_version(fleet.name, "telemetry", day)
    return {name: (folder / name).read_bytes() for name in (DATA_FILE, QUARANTINE_FILE)}


def rows_stored(lake_root: Path, fleet: Fleet, day: date) -> int:
    folder = Lake(lake_root).partition_version(fleet.name, "telemetry", day)
    quarantine = pd.read_parquet(folder / QUARANTINE_FILE)
    assert not quarantine.duplicated(["source_file", "source_row"]).any(), "a source row quarantined twice"
    return len(pd.read_parquet(folder / DATA_FILE)) + len(quarantine)


def leftovers(table_dir: Path) -> list[str]:
    """Temp files and version folders no partition link names."""
    linked = {p.readlink().name for p in table_dir.iterdir() if p.is_symlink()}
    return sorted(p.name for p in table_dir.iterdir() if p.name.startswith(TMP_PREFIX) or (p.name.startswith(VERSION_PREFIX) and p.name not in linked))


CRASH_POINTS = [(step, 1) for step in STEPS] + [("written", 2)]


@pytest.mark.parametrize(("step", "nth"), CRASH_POINTS, ids=[f"{s}-{n}" for s, n in CRASH_POINTS])
def test_ingestion_killed_at_each_commit_step_leaves_the_old_day_or_the_new(fleet: Fleet, tmp_path: Path, step: str, nth: int):
    old_read = write_sources(fleet, old_rows)
    old_lake, reference, lake_root = tmp_path / "old", tmp_path / "reference", tmp_path / "lake"
    ingest(fleet, old_lake)
    old = {day: day_files(old_lake, fleet, day) for day in RUN_DAYS}
    new_read = write_sources(fleet, new_rows)
    ingest(fleet, reference)
    new = {day: day_files(reference, fleet, day) for day in RUN_DAYS}
    assert all(old[d][n] != new[d][n] for d in RUN_DAYS for n in (DATA_FILE, QUARANTINE_FILE)), "old and new days must differ"

    shutil.copytree(old_lake, lake_root, symlinks=True)
    args = [str(lake_root), str(fleet.profile_file), str(fleet.landing_root), step, str(nth), *map(str, RUN_DAYS)]
    died = subprocess.run([sys.executable, "-c", CRASHING_RUN, *args])
    assert died.returncode == CRASHED

    first, last = RUN_DAYS
    switched = STEPS.index(step) >= STEPS.index("switched")
    assert day_files(lake_root, fleet, first) == new[first], "a day committed before the kill stays new"
    assert day_files(lake_root, fleet, last) == (new if switched else old)[last]
    assert rows_stored(lake_root, fleet, first) == new_read[first]
    assert rows_stored(lake_root, fleet, last) == (new_read if switched else old_read)[last]

    ingest(fleet, lake_root)
    assert {day: day_files(lake_root, fleet, day) for day in RUN_DAYS} == new, "a re-run gives the bytes of an uninterrupted run"
    assert leftovers(Lake(lake_root).table_dir(fleet.name, "telemetry")) == []
