"""A malformed CSV line is quarantined on its own; the rest of the file is ingested."""

from __future__ import annotations

import json

import pytest

from iot_mlops_tests.fleet import DAYS, Fleet, check_results, clean_day, materializations
from iot_mlops_tests.ingestion.test_telemetry_quarantine import expected_keys, valid_keys

DAY = DAYS[1]


def write_lines(fleet: Fleet, lines: list[bytes]) -> None:
    fleet.path("telemetry", DAY).write_bytes(b"\n".join(lines) + b"\n")


def clean_lines(rows: list[dict]) -> list[bytes]:
    return [b"device,time,temp,pressure"] + [f"{r['device']},{r['time']},{r['temp']},{r['pressure']}".encode() for r in rows]


@pytest.mark.parametrize(
    "bad, reason",
    [(b"d2,2024-01-02 05:00:00,2\xff1.5,1.5", "invalid_encoding"), (b"d2,2024-01-02 05:00:00,21.5,1.5,surprise", "extra_field")],
    ids=["non-utf8-byte", "extra-field"],
)
def test_a_malformed_line_is_quarantined_and_the_rest_kept(fleet: Fleet, bad: bytes, reason: str):
    rows = clean_day(DAY)
    lines = clean_lines(rows)
    lines.insert(4, bad)
    write_lines(fleet, lines)

    result = fleet.materialize("devices", "telemetry", day=DAY)
    assert result.success
    assert check_results(result)[("telemetry", "rows_accounted_for")].passed
    meta = materializations(result)[("telemetry", DAY.isoformat())]
    assert (meta["rows_read"], meta["rows_valid"], meta["rows_quarantined"]) == (len(rows) + 1, len(rows), 1)
    assert meta["ignored_columns"] == {}
    quarantine = fleet.quarantine("telemetry", DAY)
    assert list(quarantine["reason"]) == [reason]
    assert quarantine["record"][0]["line"] == 5
    assert quarantine["record"][0]["text"].startswith("d2,2024-01-02 05:00:00,")
    assert valid_keys(fleet) == expected_keys(rows)
    assert list(fleet.read("telemetry", DAY).columns) == ["device_id", "ts", "temp", "pressure"]


def test_reruns_give_the_same_files(fleet: Fleet):
    lines = clean_lines(clean_day(DAY))
    lines[6:6] = [b"d2,2024-01-02 05:00:00,2\xff1.5,1.5", b"d1,2024-01-02 05:00:00,21.5,1.5,x", b"d3,2024-01-02 07:00:00,21.5"]
    write_lines(fleet, lines)
    outputs = []
    for _ in range(2):
        assert fleet.materialize("devices", "telemetry", day=DAY).success
        outputs.append([fleet.file(t, DAY).read_bytes() for t in ("telemetry", "quarantine/telemetry")])
    assert outputs[0] == outputs[1]
    assert sorted(fleet.quarantine("telemetry", DAY)["reason"]) == ["extra_field", "invalid_encoding", "missing_value:pressure"]


def test_a_quoted_line_break_in_a_value_is_one_row(fleet: Fleet):
    rows = clean_day(DAY)
    lines = clean_lines(rows)
    lines.insert(2, b'"d1\nd2",2024-01-02 05:00:00,21.5,1.5')
    write_lines(fleet, lines)
    assert fleet.materialize("devices", "telemetry", day=DAY).success
    quarantine = fleet.quarantine("telemetry", DAY)
    assert list(quarantine["reason"]) == ["invalid_device_id"]
    assert json.dumps(quarantine["record"][0]["device"]) == json.dumps("d1\nd2")
    assert valid_keys(fleet) == expected_keys(rows)


def test_a_rejected_line_of_a_whole_table_lands_once_in_the_first_partition(fleet: Fleet):
    fleet.spec["source"]["telemetry"]["path"] = "telemetry.csv"
    fleet.write_profile()
    rows = [*clean_day(DAYS[0]), *clean_day(DAYS[1])]
    lines = clean_lines(rows)
    lines.insert(30, b"d2,2024-01-02 05:00:00,2\xff1.5,1.5")
    fleet.path("telemetry").write_bytes(b"\n".join(lines) + b"\n")
    for day in (DAYS[1], DAYS[0]):
        assert fleet.materialize("devices", "telemetry", day=day).success
    assert fleet.quarantine("telemetry", DAYS[1]).empty
    assert list(fleet.quarantine("telemetry", DAYS[0])["reason"]) == ["invalid_encoding"]
    assert len(fleet.read("telemetry", DAYS[0])) + len(fleet.read("telemetry", DAYS[1])) == len(rows)
