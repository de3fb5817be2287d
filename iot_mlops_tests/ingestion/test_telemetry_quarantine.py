"""Each class of bad telemetry input: quarantined with its reason and raw record, or rejected."""

from __future__ import annotations

import pandas as pd
import pytest

from iot_mlops_tests.fleet import DAYS, DEVICES, Fleet, check_results, clean_day, materializations, reading, stamp

DAY = DAYS[1]


def ingest(fleet: Fleet, rows: list[dict], **write) -> None:
    fleet.write("telemetry", rows, DAY, **write)
    result = fleet.materialize("devices", "telemetry", day=DAY)
    assert result.success
    assert check_results(result)[("telemetry", "rows_accounted_for")].passed


def valid_keys(fleet: Fleet) -> set[tuple[str, pd.Timestamp]]:
    frame = fleet.read("telemetry", DAY)
    return set(zip(frame["device_id"], frame["ts"]))


def expected_keys(rows: list[dict]) -> set[tuple[str, pd.Timestamp]]:
    return {(r["device"], pd.Timestamp(r["time"])) for r in rows}


def assert_one_quarantined(fleet: Fleet, reason: str, raw: dict) -> pd.Series:
    """Exactly one quarantined row, with this reason and the raw record's fields."""
    quarantine = fleet.quarantine("telemetry", DAY)
    assert list(quarantine["reason"]) == [reason]
    row = quarantine.iloc[0]
    assert {k: row["record"][k] for k in raw} == raw
    source = fleet.path("telemetry", DAY)
    columns = pd.read_csv(source, nrows=0).columns if source.suffix == ".csv" else pd.read_parquet(source).columns
    assert set(row["record"]) == set(columns), "the record is the raw row, nothing added"
    assert row["day"] == DAY
    return row


def test_non_numeric_value_in_csv(fleet: Fleet):
    rows = clean_day(DAY)
    bad = rows.pop(5)
    ingest(fleet, [*rows, {**bad, "temp": "21,5x"}])
    assert_one_quarantined(fleet, "non_numeric:temp", {"device": bad["device"], "time": bad["time"], "temp": "21,5x"})
    assert valid_keys(fleet) == expected_keys(rows)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_missing_value(fleet: Fleet, fmt: str):
    fleet.spec["source"]["telemetry"]["path"] = f"telemetry/{{date}}.{fmt}"
    fleet.write_profile()
    rows = clean_day(DAY)
    bad = rows.pop(7)
    ingest(fleet, [*rows, {**bad, "pressure": None}])
    assert_one_quarantined(fleet, "missing_value:pressure", {"device": bad["device"], "pressure": None})
    assert valid_keys(fleet) == expected_keys(rows)


@pytest.mark.parametrize("field, value", [("temp", 100.5), ("pressure", -0.1)])
def test_out_of_declared_range(fleet: Fleet, field: str, value: float):
    rows = clean_day(DAY)
    bad = rows.pop(3)
    ingest(fleet, [*rows, {**bad, field: value}])
    row = assert_one_quarantined(fleet, f"out_of_range:{field}", {"device": bad["device"], "time": bad["time"]})
    assert float(row["record"][field]) == value
    assert valid_keys(fleet) == expected_keys(rows)


def test_range_bounds_are_inclusive(fleet: Fleet):
    rows = clean_day(DAY)
    rows[0]["temp"], rows[1]["temp"], rows[2]["pressure"] = 0, 100, 10
    ingest(fleet, rows)
    assert fleet.quarantine("telemetry", DAY).empty
    assert valid_keys(fleet) == expected_keys(rows)


def test_unparsable_timestamp(fleet: Fleet):
    rows = clean_day(DAY)
    ingest(fleet, [*rows, {**reading("d2", stamp(DAY, 1)), "time": "2024-13-45 99:00"}])
    assert_one_quarantined(fleet, "unparsable_timestamp", {"device": "d2", "time": "2024-13-45 99:00"})
    assert valid_keys(fleet) == expected_keys(rows)


@pytest.mark.parametrize("offset_hours", [-1, 24])
def test_timestamp_outside_the_partition(fleet: Fleet, offset_hours: int):
    rows = clean_day(DAY)
    stray = reading("d1", stamp(DAY, offset_hours))
    ingest(fleet, [*rows, stray])
    assert_one_quarantined(fleet, "timestamp_outside_partition", {"device": "d1", "time": stray["time"]})
    assert valid_keys(fleet) == expected_keys(rows)


def test_timestamp_offsets_are_converted_to_utc(fleet: Fleet):
    rows = clean_day(DAY)
    rows[0] = {**rows[0], "time": stamp(DAY, 2).strftime("%Y-%m-%dT%H:%M:%S") + "+02:00"}  # d1 00:00 UTC
    ingest(fleet, rows)
    assert fleet.quarantine("telemetry", DAY).empty
    assert valid_keys(fleet) == expected_keys(clean_day(DAY))


def test_duplicate_device_and_timestamp_keeps_the_first(fleet: Fleet):
    rows = clean_day(DAY)
    first = rows[10]
    again = [{**first, "temp": 55.5}, {**first, "temp": 66.5}]
    ingest(fleet, [*rows[:11], again[0], *rows[11:], again[1]])
    quarantine = fleet.quarantine("telemetry", DAY)
    assert list(quarantine["reason"]) == ["duplicate", "duplicate"]
    assert sorted(float(r["temp"]) for r in quarantine["record"]) == [55.5, 66.5]
    valid = fleet.read("telemetry", DAY)
    kept = valid[(valid["device_id"] == first["device"]) & (valid["ts"] == pd.Timestamp(first["time"]))]
    assert list(kept["temp"]) == [first["temp"]]
    assert valid_keys(fleet) == expected_keys(rows)


def test_unknown_device(fleet: Fleet):
    rows = clean_day(DAY)
    ingest(fleet, [*rows, {**reading("d1", stamp(DAY, 4)), "device": "ghost"}])
    assert_one_quarantined(fleet, "unknown_device", {"device": "ghost"})
    assert valid_keys(fleet) == expected_keys(rows)


def test_extra_column_is_ignored_and_reported(fleet: Fleet):
    rows = [{**r, "firmware": "v2"} for r in clean_day(DAY)]
    fleet.write("telemetry", rows, DAY)
    result = fleet.materialize("devices", "telemetry", day=DAY)
    assert result.success
    ignored = materializations(result)[("telemetry", DAY.isoformat())]["ignored_columns"]
    assert ignored == {str(fleet.path("telemetry", DAY)): ["firmware"]}
    valid = fleet.read("telemetry", DAY)
    assert list(valid.columns) == ["device_id", "ts", "temp", "pressure"]
    assert valid_keys(fleet) == expected_keys(rows)
    assert fleet.quarantine("telemetry", DAY).empty


def test_missing_required_column_fails_and_writes_nothing(fleet: Fleet):
    assert fleet.materialize("devices", "telemetry", day=DAY).success
    before = {t: fleet.file(t, DAY).read_bytes() for t in ("telemetry", "quarantine/telemetry")}
    stamps = {t: fleet.file(t, DAY).stat().st_mtime_ns for t in before}

    fleet.write("telemetry", [{k: v for k, v in r.items() if k != "pressure"} for r in clean_day(DAY)], DAY)
    result = fleet.materialize("telemetry", day=DAY)

    assert not result.success
    error = result.failure_data_for_node(f"{fleet.name}__telemetry").error
    source_error = error.cause or error
    assert source_error.cls_name == "SourceError"
    assert str(fleet.path("telemetry", DAY)) in source_error.message and "pressure" in source_error.message
    for table, content in before.items():
        assert fleet.file(table, DAY).read_bytes() == content
        assert fleet.file(table, DAY).stat().st_mtime_ns == stamps[table]
    assert not list(fleet.file("telemetry", DAY).parent.glob(".tmp-*"))


@pytest.mark.parametrize("content", ["", "device,time,temp,pressure\n"], ids=["zero-bytes", "header-only"])
def test_empty_file_gives_an_empty_partition(fleet: Fleet, content: str):
    fleet.path("telemetry", DAY).write_text(content)
    result = fleet.materialize("devices", "telemetry", day=DAY)
    assert result.success
    assert check_results(result)[("telemetry", "rows_accounted_for")].passed
    meta = materializations(result)[("telemetry", DAY.isoformat())]
    assert (meta["rows_read"], meta["rows_valid"], meta["rows_quarantined"]) == (0, 0, 0)
    assert len(fleet.read("telemetry", DAY)) == 0
    assert list(fleet.read("telemetry", DAY).columns) == ["device_id", "ts", "temp", "pressure"]
    assert len(fleet.quarantine("telemetry", DAY)) == 0


def test_missing_source_file_fails_naming_it(fleet: Fleet):
    fleet.path("telemetry", DAY).unlink()
    result = fleet.materialize("devices", "telemetry", day=DAY)
    assert not result.success
    error = result.failure_data_for_node(f"{fleet.name}__telemetry").error
    assert f"{fleet.path('telemetry', DAY)}: source file not found" in (error.cause or error).message
    assert not fleet.file("telemetry", DAY).exists()


def test_every_device_is_kept_apart(fleet: Fleet):
    ingest(fleet, clean_day(DAY))
    valid = fleet.read("telemetry", DAY)
    assert sorted(valid["device_id"].unique()) == DEVICES
    assert valid.sort_values(["device_id", "ts"]).index.tolist() == valid.index.tolist()


def test_short_csv_row_is_quarantined_not_the_file(fleet: Fleet):
    short = reading("d3", stamp(DAY, 5))
    rows = [r for r in clean_day(DAY) if (r["device"], r["time"]) != (short["device"], short["time"])]
    target = fleet.write("telemetry", rows, DAY)
    lines = target.read_text().splitlines()
    lines.insert(3, f"{short['device']},{short['time']},{short['temp']}")
    target.write_text("\n".join(lines) + "\n")

    result = fleet.materialize("devices", "telemetry", day=DAY)
    assert result.success
    assert check_results(result)[("telemetry", "rows_accounted_for")].passed
    assert_one_quarantined(fleet, "missing_value:pressure", {"device": "d3", "time": short["time"], "pressure": None})
    assert len(fleet.read("telemetry", DAY)) == len(clean_day(DAY)) - 1


def test_whole_table_source_is_split_by_timestamp_day(fleet: Fleet):
    fleet.spec["source"]["telemetry"]["path"] = "telemetry.parquet"
    fleet.write_profile()
    early = reading("d1", stamp(DAYS[0], -2))  # before the first partition: lands in it, quarantined
    rows = [*clean_day(DAYS[0]), *clean_day(DAYS[1]), early, {**reading("d2", stamp(DAYS[1], 3)), "time": None}]
    fleet.write("telemetry", [{**r, "time": pd.Timestamp(r["time"]) if r["time"] else None} for r in rows])

    assert fleet.materialize("devices", "telemetry", days=(DAYS[0], DAYS[1])).success
    assert valid_keys_of(fleet, DAYS[0]) == expected_keys(clean_day(DAYS[0]))
    assert valid_keys_of(fleet, DAYS[1]) == expected_keys(clean_day(DAYS[1]))
    assert sorted(fleet.quarantine("telemetry", DAYS[0])["reason"]) == ["missing_value:timestamp", "timestamp_outside_partition"]
    assert fleet.quarantine("telemetry", DAYS[1]).empty


def valid_keys_of(fleet: Fleet, day) -> set[tuple[str, pd.Timestamp]]:
    frame = fleet.read("telemetry", day)
    return set(zip(frame["device_id"], frame["ts"]))
