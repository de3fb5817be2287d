"""Re-materializing a partition rewrites byte-identical files, whether run alone or in a range."""

from __future__ import annotations

from iot_mlops_tests.fleet import DAYS, Fleet, clean_day, reading, stamp

TABLES = ("telemetry", "quarantine/telemetry", "events", "quarantine/events", "features")


def test_rematerializing_gives_identical_bytes(fleet: Fleet):
    day = DAYS[2]
    rows = clean_day(day)
    fleet.write("telemetry", [*rows, {**reading("d1", stamp(day, 2)), "temp": "x"}, rows[4]], day)
    fleet.write_events(day, "error", [("d2", stamp(day, 3), "E1"), ("d2", stamp(day, 4), "E7")])
    fleet.write_events(day, "maintenance", [("d3", stamp(day, 1), "seal")])
    tables = ("devices", "telemetry", "events", "features")

    assert fleet.materialize(*tables, days=(DAYS[0], DAYS[-1])).success
    first = {t: fleet.file(t, day).read_bytes() for t in TABLES}
    assert all(len(fleet.read(t, day)) for t in TABLES), "every table should have rows for this test to mean something"

    assert fleet.materialize(*tables, day=day).success
    assert {t: fleet.file(t, day).read_bytes() for t in TABLES} == first

    assert fleet.materialize(*tables, days=(day, DAYS[-1])).success
    assert {t: fleet.file(t, day).read_bytes() for t in TABLES} == first
    assert not list(fleet.lake_root.rglob(".tmp-*"))
