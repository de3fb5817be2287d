"""Events and devices: their own quarantine reasons, and the event history of the first partition."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from iot_mlops.definitions import fleet_definitions, resources
from iot_mlops.partitions import FleetContext
from iot_mlops_tests.fleet import DAYS, DEVICES, START, Fleet, check_results, stamp

DAY = DAYS[2]


def events_of(fleet: Fleet, day) -> set[tuple]:
    frame = fleet.read("events", day)
    return set(zip(frame["device_id"], frame["ts"], frame["kind"], frame["value"]))


def test_events_unknown_component_and_error_code(fleet: Fleet):
    fleet.write_events(DAY, "failure", [("d1", stamp(DAY, 3), "impeller"), ("d2", stamp(DAY, 4), "turbine")])
    fleet.write_events(DAY, "maintenance", [("d3", stamp(DAY, 5), "seal"), ("d3", stamp(DAY, 6), "E1")])
    fleet.write_events(DAY, "error", [("d1", stamp(DAY, 7), "E2"), ("d2", stamp(DAY, 8), "E9")])
    result = fleet.materialize("devices", "events", day=DAY)
    assert result.success
    assert check_results(result)[("events", "rows_accounted_for")].passed

    quarantine = fleet.quarantine("events", DAY)
    got = {(r["reason"], r["record"]["device"], r["record"].get("component") or r["record"].get("code")) for _, r in quarantine.iterrows()}
    assert got == {("unknown_component", "d2", "turbine"), ("unknown_component", "d3", "E1"), ("unknown_error_code", "d2", "E9")}
    assert events_of(fleet, DAY) == {
        ("d1", pd.Timestamp(stamp(DAY, 3)), "failure", "impeller"),
        ("d3", pd.Timestamp(stamp(DAY, 5)), "maintenance", "seal"),
        ("d1", pd.Timestamp(stamp(DAY, 7)), "error", "E2"),
    }


def test_events_common_rules(fleet: Fleet):
    fleet.write_events(DAY, "error", [
        ("d1", stamp(DAY, 1), "E1"),
        ("d1", stamp(DAY, 1), "E1"),
        ("ghost", stamp(DAY, 2), "E1"),
        ("d2", stamp(DAY, 25), "E2"),
        ("d3", stamp(DAY, 3), ""),
    ])
    assert fleet.materialize("devices", "events", day=DAY).success
    reasons = sorted(fleet.quarantine("events", DAY)["reason"])
    assert reasons == ["duplicate", "missing_value:code", "timestamp_outside_partition", "unknown_device"]
    assert events_of(fleet, DAY) == {("d1", pd.Timestamp(stamp(DAY, 1)), "error", "E1")}


def test_first_partition_keeps_earlier_history_later_ones_do_not(fleet: Fleet):
    history = stamp(START, -24 * 40)
    fleet.write_events(START, "maintenance", [("d1", history, "seal")])
    fleet.write_events(DAY, "maintenance", [("d2", history, "seal")])
    assert fleet.materialize("devices", "events", days=(START, DAY)).success
    assert events_of(fleet, START) == {("d1", pd.Timestamp(history), "maintenance", "seal")}
    assert fleet.read("events", DAY).empty
    assert list(fleet.quarantine("events", DAY)["reason"]) == ["timestamp_outside_partition"]


def test_devices_out_of_range_attribute(fleet: Fleet):
    rows = [{"device": d, "model": "m1", "age": 2 + i} for i, d in enumerate(DEVICES)]
    rows += [{"device": "d4", "model": "m1", "age": 31}, {"device": "d5", "model": "m2", "age": "old"}, {"device": "d6", "model": "", "age": 1}]
    fleet.write("devices", rows)
    result = fleet.materialize("devices")
    assert result.success
    assert check_results(result)[("devices", "rows_accounted_for")].passed

    quarantine = fleet.quarantine("devices")
    got = {(r["reason"], r["record"]["device"], r["record"]["age"]) for _, r in quarantine.iterrows()}
    assert got == {("out_of_range:age", "d4", "31"), ("non_numeric:age", "d5", "old"), ("missing_value:model", "d6", "1")}
    devices = fleet.read("devices")
    assert list(devices["device_id"]) == DEVICES
    assert list(devices["age"]) == [2.0, 3.0, 4.0]


def test_telemetry_of_a_quarantined_device_is_unknown(fleet: Fleet):
    fleet.write("devices", [{"device": "d1", "model": "m1", "age": 99}, {"device": "d2", "model": "m1", "age": 1}, {"device": "d3", "model": "m1", "age": 1}])
    assert fleet.materialize("devices", "telemetry", day=DAY).success
    assert set(fleet.read("telemetry", DAY)["device_id"]) == {"d2", "d3"}
    assert set(fleet.quarantine("telemetry", DAY)["reason"]) == {"unknown_device"}


def test_telemetry_needs_the_devices_table(fleet: Fleet):
    result = fleet.materialize("telemetry", day=DAY)
    assert not result.success
    assert not fleet.file("telemetry", DAY).exists()


def test_a_fleet_without_event_tables_ingests_and_computes_features(fleet: Fleet):
    fleet.spec["source"]["events"] = []
    profile = fleet.write_profile()
    result = fleet.materialize("devices", "telemetry", "events", "features", days=(DAYS[1], DAY))
    assert result.success
    assert fleet.read("events", DAY).empty and fleet.read("events", DAYS[1]).empty
    assert check_results(result)[("events", "rows_accounted_for")].passed
    features = fleet.read("features", DAY)
    assert len(features) == len(DEVICES) * 24
    assert not [c for c in features.columns if c.startswith(("errors_", "hours_since_"))]  # no table, no event features
    defs = dg.Definitions.merge(fleet_definitions(FleetContext.of(profile, fleet.profile_dir)), dg.Definitions(resources=resources()))
    dg.Definitions.validate_loadable(defs)
