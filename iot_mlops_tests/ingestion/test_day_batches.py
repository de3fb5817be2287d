"""A range run over daily files stages and writes a day at a time, with the same files as one run per day."""

from __future__ import annotations

from pathlib import Path

from iot_mlops.ingestion.ingest import ingest_devices, ingest_telemetry
from iot_mlops.ingestion.sources import SourceFile
from iot_mlops.ingestion.staging import day_batches
from iot_mlops.lake import connect
from iot_mlops_tests.fleet import DAYS, Fleet, clean_day, reading, stamp


def test_daily_files_are_batched_by_day_and_a_whole_table_is_one_batch():
    a, b, part = SourceFile(Path("a.csv"), DAYS[0]), SourceFile(Path("b.csv"), DAYS[1]), SourceFile(Path("b.1.csv"), DAYS[1])
    assert day_batches([a, b, part], DAYS[:2]) == [([a], [DAYS[0]]), ([b, part], [DAYS[1]])]
    whole = SourceFile(Path("all.csv"), None)
    assert day_batches([whole], DAYS[:2]) == [([whole], DAYS[:2])]


def test_a_range_run_holds_only_its_last_day_and_writes_what_single_days_write(fleet: Fleet, tmp_path: Path):
    days = DAYS[:3]
    for day in days:  # a duplicate and an out-of-range reading per day
        fleet.write("telemetry", [*clean_day(day), clean_day(day)[0], {**reading("d1", stamp(day, 2)), "temp": 250}], day)
    profile, source = fleet.profile(), fleet.source
    con = connect()
    ingest_devices(con, fleet.lake, profile, source)
    report = ingest_telemetry(con, fleet.lake, profile, source, days)
    assert [d for (d,) in con.execute("SELECT DISTINCT day FROM checked").fetchall()] == [days[-1]]
    ranged = {d: (fleet.read("telemetry", d), fleet.quarantine("telemetry", d)) for d in days}

    for day in days:
        ingest_telemetry(connect(), fleet.lake, profile, source, [day])
        valid, quarantine = ranged[day]
        assert fleet.read("telemetry", day).equals(valid)
        assert fleet.quarantine("telemetry", day)[["reason", "source_row"]].equals(quarantine[["reason", "source_row"]])
        assert sorted(quarantine["reason"]) == ["duplicate", "out_of_range:temp"]
        assert report.days[day].rows_read == len(clean_day(day)) + 2
        assert report.days[day].accounted_for
