"""The rows_accounted_for check and the quarantine counts reported to Dagster."""

from __future__ import annotations

from collections import Counter
from datetime import date

import dagster as dg

from iot_mlops.ingestion.assets import ACCOUNTED, accounted_check
from iot_mlops.ingestion.staging import IngestReport, PartitionCounts
from iot_mlops_tests.fleet import DAYS, Fleet, check_results, clean_day, materializations, reading, stamp

# Bad rows injected per day: (row changes, the reason they must get).
BAD = [
    ({"temp": "hot"}, "non_numeric:temp"),
    ({"temp": 250}, "out_of_range:temp"),
    ({"pressure": 11}, "out_of_range:pressure"),
    ({"pressure": ""}, "missing_value:pressure"),
    ({"device": "ghost"}, "unknown_device"),
    ({"time": "yesterday"}, "unparsable_timestamp"),
]


def dirty_day(day: date, bad: list[tuple[dict, str]]) -> list[dict]:
    rows = clean_day(day)
    rows += [{**reading("d1", stamp(day, 1)), **change} for change, _ in bad]
    rows.append(dict(rows[0]))  # duplicate of the first row
    return rows


def test_rows_read_equal_valid_plus_quarantined(fleet: Fleet):
    days = DAYS[:2]
    for i, day in enumerate(days):
        fleet.write("telemetry", dirty_day(day, BAD[i:]), day)
    result = fleet.materialize("devices", "telemetry", days=(days[0], days[-1]))
    assert result.success

    check = check_results(result)[("telemetry", ACCOUNTED)]
    assert check.passed
    meta = {k: v.value for k, v in check.metadata.items()}
    read = sum(len(dirty_day(d, BAD[i:])) for i, d in enumerate(days))
    valid = sum(len(fleet.read("telemetry", d)) for d in days)
    quarantined = sum(len(fleet.quarantine("telemetry", d)) for d in days)
    assert meta["rows_read"] == read == valid + quarantined
    assert (meta["rows_valid_written"], meta["rows_quarantined_written"]) == (valid, quarantined)
    assert valid == len(days) * len(clean_day(days[0]))

    expected = Counter()
    meta = materializations(result)[("telemetry", days[0].isoformat())]
    for i, day in enumerate(days):
        by_detail = Counter(reason for _, reason in BAD[i:]) + Counter(["duplicate"])
        assert Counter(fleet.quarantine("telemetry", day)["reason"]) == by_detail
        expected += Counter(r.split(":")[0] for r in by_detail.elements())
        written = {"read": len(dirty_day(day, BAD[i:])), "valid": len(fleet.read("telemetry", day)), "quarantined": sum(by_detail.values())}
        assert meta["rows_per_day"][day.isoformat()] == written
    # A range run's metadata covers the whole run, so it carries no per-partition row count.
    assert meta["quarantined_by_reason"] == dict(expected)
    assert "dagster/row_count" not in meta


def test_single_partition_metadata_counts(fleet: Fleet):
    day = DAYS[3]
    fleet.write("telemetry", dirty_day(day, BAD), day)
    result = fleet.materialize("devices", "telemetry", day=day)
    meta = materializations(result)[("telemetry", day.isoformat())]
    assert meta["quarantined_by_reason"] == {"non_numeric": 1, "out_of_range": 2, "missing_value": 1, "unknown_device": 1, "unparsable_timestamp": 1, "duplicate": 1}
    assert meta["quarantined_by_detail"]["out_of_range:pressure"] == 1
    assert meta["rows_read"] == len(dirty_day(day, BAD))
    assert meta["dagster/row_count"] == meta["rows_valid"] == len(fleet.read("telemetry", day))
    assert meta["rows_quarantined"] == len(BAD) + 1


def test_check_fails_when_rows_are_lost():
    lost = PartitionCounts(rows_read=10, rows_valid=7, rows_quarantined=2)
    fine = PartitionCounts(rows_read=5, rows_valid=5, rows_quarantined=0)
    report = IngestReport("telemetry", days={DAYS[0]: fine, DAYS[1]: lost})
    result = accounted_check(report, dg.AssetKey(["tiny", "telemetry"]))
    assert not result.passed
    assert list(result.metadata["days_not_accounted_for"].value) == [DAYS[1].isoformat()]
    assert accounted_check(IngestReport("telemetry", days={DAYS[0]: fine}), dg.AssetKey("x")).passed
