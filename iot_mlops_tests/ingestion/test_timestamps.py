"""Timestamps parsed row by row into UTC, and rows after the last partition or in the future quarantined."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_mlops.ingestion.mqtt_payload import parse_timestamp
from iot_mlops.ingestion.rules import AMBIGUOUS, layered, timestamp_layers
from iot_mlops.partitions import daily_partitions, future_limit
from iot_mlops_tests.fleet import DAYS, Fleet, check_results, clean_day, reading, stamp
from iot_mlops_tests.ingestion.test_telemetry_quarantine import expected_keys, valid_keys, valid_keys_of

DAY = DAYS[1]
BERLIN = ZoneInfo("Europe/Berlin")

# Text -> (naive UTC, None) or (None, reason).
CASES = {
    "2026-06-01 09:00 Europe/Berlin": (datetime(2026, 6, 1, 7), None),
    "2026-06-01 10:00:00": (datetime(2026, 6, 1, 10), None),
    "2026-06-01T09:00:00+02:00": (datetime(2026, 6, 1, 7), None),
    "2026-06-01 09:00:00 -0530": (datetime(2026, 6, 1, 14, 30), None),
    "2026-06-01T09:00:00Z": (datetime(2026, 6, 1, 9), None),
    "2026-06-01": (datetime(2026, 6, 1), None),
    "2026-01-15 12:00:00 America/New_York": (datetime(2026, 1, 15, 17), None),
    "2026-06-01 09:00:00.250 UTC": (datetime(2026, 6, 1, 9, 0, 0, 250000), None),
    "2026-03-29 02:30 Europe/Berlin": (None, "nonexistent_local_time"),
    "2026-10-25 02:30 Europe/Berlin": (None, "ambiguous_local_time"),
    "2026-06-01 09:00 Nowhere/Atlantis": (None, "unknown_time_zone"),
    "2026-06-01 09:00:00+25:00": (None, "unparsable_timestamp"),
    "infinity": (None, "unparsable_timestamp"),
    "10000-01-01 00:00:00": (None, "unparsable_timestamp"),
    "yesterday": (None, "unparsable_timestamp"),
    "9999-12-31T23:00:00-05:00": (None, "unparsable_timestamp"),  # year 10000 in UTC
    "0001-01-01T00:30:00+01:00": (None, "unparsable_timestamp"),  # year 0 in UTC
    "20260601T090000": (None, "unparsable_timestamp"),
    "2026-06-01 09:00 utc": (None, "unknown_time_zone"),
    "2026-6-1 9:05": (datetime(2026, 6, 1, 9, 5), None),
    "2026-06-01T09:00:00.123456789+0000": (datetime(2026, 6, 1, 9, 0, 0, 123456), None),
    "2026-02-30 10:00": (None, "unparsable_timestamp"),
}


def parse_all(values: list[str], ambiguous: str = "quarantine") -> list[tuple]:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS s, generate_subscripts(?, 1) AS i", [values, values])
    layers = con.execute(f"SELECT __ts, __ts_problem FROM {layered('t', timestamp_layers('s', 'VARCHAR', ambiguous))} ORDER BY i").fetchall()
    # MQTT messages are parsed in Python, one by one: the same grammar must give the same answer.
    assert [parse_timestamp(v, ambiguous) for v in values] == [ts if problem is None else problem for ts, problem in layers]
    return layers


@pytest.mark.parametrize("order", ["as listed", "reversed", "zones first"])
def test_every_form_is_parsed_on_its_own_whatever_its_neighbours(order: str):
    values = list(CASES)
    if order == "reversed":
        values.reverse()
    elif order == "zones first":
        values.sort(key=lambda v: "/" not in v)
    assert parse_all(values) == [CASES[v] for v in values]


@pytest.mark.parametrize("rule, expected", [("earliest", datetime(2026, 10, 25, 0, 30)), ("latest", datetime(2026, 10, 25, 1, 30))])
def test_ambiguous_local_time_follows_the_profile_rule(rule: str, expected: datetime):
    assert parse_all(["2026-10-25 02:30 Europe/Berlin"], rule) == [(expected, None)]
    fold = 0 if rule == "earliest" else 1
    assert datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=fold).astimezone(UTC).replace(tzinfo=None) == expected


def test_a_named_zone_does_not_shift_the_naive_rows_after_it(fleet: Fleet):
    rows = clean_day(DAY)
    first = rows[0]  # d1 at 00:00 UTC, written as 01:00 Berlin time
    rows[0] = {**first, "time": "2024-01-02 01:00:00 Europe/Berlin"}
    fleet.write("telemetry", rows, DAY)
    assert fleet.materialize("devices", "telemetry", day=DAY).success
    assert fleet.quarantine("telemetry", DAY).empty
    assert valid_keys(fleet) == expected_keys(clean_day(DAY))


def test_nonexistent_local_time_is_quarantined_in_a_file(fleet: Fleet):
    fleet.spec["partitions"] = {"start": "2026-03-28", "end": "2026-03-30"}
    fleet.write_profile()
    day = datetime(2026, 3, 29).date()
    fleet.write_clean([day])
    rows = clean_day(day)
    rows[2] = {**rows[2], "time": "2026-03-29 02:30:00 Europe/Berlin"}
    fleet.write("telemetry", rows, day)
    assert fleet.materialize("devices", "telemetry", day=day).success
    assert list(fleet.quarantine("telemetry", day)["reason"]) == ["nonexistent_local_time"]


def whole_table(fleet: Fleet, rows: list[dict], end: str) -> None:
    """Telemetry as one Parquet table with typed timestamps (microseconds, so year 9999 fits)."""
    fleet.spec["source"]["telemetry"]["path"] = "telemetry.parquet"
    fleet.spec["partitions"]["end"] = end
    fleet.write_profile()
    times = [datetime.fromisoformat(r["time"]) if isinstance(r["time"], str) else r["time"] for r in rows]
    table = pa.table({
        "device": [r["device"] for r in rows],
        "time": pa.array(times, pa.timestamp("us")),
        "temp": [r["temp"] for r in rows],
        "pressure": [r["pressure"] for r in rows],
    })
    pq.write_table(table, fleet.path("telemetry"))


def test_rows_after_a_fixed_end_are_quarantined_in_the_last_partition(fleet: Fleet):
    late = reading("d1", stamp(DAYS[-1] + timedelta(days=1), 5))
    future = reading("d2", datetime(9999, 12, 31))
    whole_table(fleet, [*clean_day(DAYS[-2]), *clean_day(DAYS[-1]), late, future], DAYS[-1].isoformat())
    result = fleet.materialize("devices", "telemetry", days=(DAYS[-2], DAYS[-1]))
    assert result.success and check_results(result)[("telemetry", "rows_accounted_for")].passed
    quarantine = fleet.quarantine("telemetry", DAYS[-1])
    assert list(quarantine["reason"]) == ["after_partition_end", "timestamp_in_future"]
    assert valid_keys_of(fleet, DAYS[-1]) == expected_keys(clean_day(DAYS[-1]))


def test_a_far_future_reading_neither_breaks_loading_nor_moves_the_end(fleet: Fleet):
    future = [reading("d2", datetime(9999, 12, 31, 23, 59, 59)), reading("d3", datetime.now(UTC).replace(tzinfo=None) + timedelta(days=3))]
    whole_table(fleet, [*clean_day(DAYS[0]), *clean_day(DAYS[2]), *future], "auto")
    keys = daily_partitions(fleet.profile(), fleet.profile_dir).get_partition_keys()
    assert keys[-1] == DAYS[2].isoformat()
    result = fleet.materialize("devices", "telemetry", days=(DAYS[0], DAYS[2]))
    assert result.success and check_results(result)[("telemetry", "rows_accounted_for")].passed
    # In the first partition: the last of an `auto` end moves as data arrives, the first does not.
    assert list(fleet.quarantine("telemetry", DAYS[0])["reason"]) == ["timestamp_in_future", "timestamp_in_future"]
    assert fleet.quarantine("telemetry", DAYS[2]).empty


def test_max_future_comes_from_the_profile(fleet: Fleet):
    now = datetime(2026, 6, 1, 12, 0, 0, 500, tzinfo=UTC)
    assert future_limit(fleet.profile(), now) == datetime(2026, 6, 2, 12)
    fleet.spec["max_future"] = "30min"
    assert future_limit(fleet.write_profile(), now) == datetime(2026, 6, 1, 12, 30)


def test_a_future_reading_in_a_daily_file_is_quarantined(fleet: Fleet):
    rows = clean_day(DAY)
    ingest_rows = [*rows, {**reading("d1", stamp(DAY, 3)), "time": "9999-12-31 23:59:59"}]
    fleet.write("telemetry", ingest_rows, DAY)
    assert fleet.materialize("devices", "telemetry", day=DAY).success
    assert list(fleet.quarantine("telemetry", DAY)["reason"]) == ["timestamp_in_future"]
    assert valid_keys(fleet) == expected_keys(rows)


def test_auto_end_ignores_a_daily_file_dated_in_the_future(fleet: Fleet):
    fleet.spec["partitions"]["end"] = "auto"
    fleet.write_profile()
    fleet.write("telemetry", clean_day(DAYS[0]), datetime(9999, 12, 31).date())
    keys = daily_partitions(fleet.profile(), fleet.profile_dir).get_partition_keys()
    assert keys[-1] == DAYS[-1].isoformat()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_source_column_named_date_is_not_replaced_by_the_folder(fleet: Fleet, fmt: str):
    fleet.spec["source"]["telemetry"] = {"path": f"telemetry/date={{date}}/part.{fmt}", "timestamp_column": "date"}
    fleet.write_profile()
    rows = [{"device": r["device"], "date": r["time"], "temp": r["temp"], "pressure": r["pressure"]} for r in clean_day(DAY)]
    fleet.write("telemetry", rows, DAY)
    assert fleet.materialize("devices", "telemetry", day=DAY).success
    assert fleet.quarantine("telemetry", DAY).empty
    assert valid_keys(fleet) == {(r["device"], pd.Timestamp(r["date"])) for r in rows}


def test_mqtt_batch_with_a_named_zone_keeps_the_naive_readings_in_utc(fleet: Fleet):
    from iot_mlops.ingestion.mqtt_payload import Message, PayloadContract

    times = ["2024-01-02 09:00:00 Europe/Berlin", *(f"2024-01-02 {h:02d}:00:00" for h in range(10, 20)), "2024-01-02T21:00:00+01:00"]
    received_us = int(datetime(2024, 1, 2, 22, tzinfo=UTC).timestamp() * 1_000_000)
    messages = [
        Message(i, received_us, "fleets/tiny/d1/telemetry", json.dumps({"time": t, "temp": 20.5, "pressure": 1.5}).encode(), i, 1)
        for i, t in enumerate(times)
    ]
    contract = PayloadContract(fleet.profile())
    con = duckdb.connect()
    con.register("batch", contract.batch_table(messages))
    rows = con.execute(f"SELECT ts, reason FROM ({contract.check_sql('batch')}) ORDER BY __seq").fetchall()
    assert rows == [(datetime(2024, 1, 2, 8), None), *((datetime(2024, 1, 2, h), None) for h in range(10, 20)),
                    (datetime(2024, 1, 2, 20), None)]


def test_typed_columns_are_utc_whatever_the_session_zone(tmp_path):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    path = tmp_path / "typed.parquet"
    con.execute(f"""COPY (SELECT TIMESTAMPTZ '2024-01-02 05:00:00+00' AS zoned, TIMESTAMP '2024-01-02 05:00:00' AS naive,
                    DATE '2024-01-02' AS day, 'infinity'::TIMESTAMP AS endless) TO '{path}'""")
    source = f"read_parquet('{path}')"
    types = {name: dtype for name, dtype, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    got = {c: con.execute(f"SELECT __ts, __ts_problem FROM {layered(source, timestamp_layers(c, types[c]))}").fetchone() for c in types}
    assert got == {
        "zoned": (datetime(2024, 1, 2, 5), None),
        "naive": (datetime(2024, 1, 2, 5), None),
        "day": (datetime(2024, 1, 2), None),
        "endless": (None, "unparsable_timestamp"),
    }


def test_events_follow_the_same_time_rules(fleet: Fleet):
    rows = [
        {"device": "d1", "time": "2024-01-02 10:00:00 Europe/Berlin", "component": "seal"},
        {"device": "d2", "time": "2024-01-02 10:00:00", "component": "seal"},
        {"device": "d3", "time": "9999-12-31 23:59:59", "component": "seal"},
    ]
    fleet.write("failure", rows, DAY, columns=["device", "time", "component"])
    assert fleet.materialize("devices", "events", day=DAY).success
    events = fleet.read("events", DAY)
    assert sorted(zip(events["device_id"], events["ts"])) == [("d1", pd.Timestamp("2024-01-02 09:00")), ("d2", pd.Timestamp("2024-01-02 10:00"))]
    assert list(fleet.quarantine("events", DAY)["reason"]) == ["timestamp_in_future"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.builds(
    "{}-{:02d}-{:02d}{}{}".format,
    st.sampled_from(["0001", "2026", "9999"]), st.integers(1, 12), st.integers(1, 31),
    st.sampled_from(["", " 00:00", "T02:30:00", " 23:59:59.5", "T01:59:59.999999", " 24:00"]),
    st.sampled_from(["", "Z", "+01:00", "-05", "+2330", "+24:00", " Europe/Berlin", " America/New_York", " UTC", " Mars/Base"]),
), min_size=1, max_size=12), st.sampled_from(AMBIGUOUS))
def test_mqtt_and_file_parsing_agree_on_any_mix(values: list[str], ambiguous: str):
    parse_all(values, ambiguous)
