"""One device id rule: ingestion accepts exactly the ids the prediction API can serve."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from iot_mlops.serving import schemas
from iot_mlops_tests.fleet import DAYS, DEVICES, Fleet, clean_day, reading, stamp

DAY = DAYS[1]
IDS = ["WH-1001", "a:b@c.d_e-f", " d4", "d5 ", "bad id", "d/6", "x" * 129, "y" * 128, "-d8", "d9\t"]


def api_accepts(device_id: str) -> bool:
    """Both ways the API takes a device id: the path parameter's pattern and the body's DeviceId type."""
    path = Annotated[str, Field(pattern=schemas.DEVICE_ID)]
    results = set()
    for kind in (path, schemas.DeviceId):
        try:
            TypeAdapter(kind).validate_python(device_id)
            results.add(True)
        except ValidationError:
            results.add(False)
    assert len(results) == 1, f"path and body disagree on {device_id!r}"
    return results.pop()


def test_ingestion_accepts_exactly_the_ids_the_api_serves(fleet: Fleet):
    devices = [{"device": d, "model": "m0", "age": 3} for d in [*DEVICES, *IDS]]
    fleet.write("devices", devices)
    extra = [{**reading("d1", stamp(DAY, h)), "device": d} for h, d in enumerate(IDS)]
    fleet.write("telemetry", [*clean_day(DAY), *extra], DAY)
    assert fleet.materialize("devices", "telemetry", day=DAY).success

    accepted = set(fleet.read("devices")["device_id"])
    assert accepted == set(DEVICES) | {d for d in IDS if api_accepts(d)}
    assert {d for d in IDS if not api_accepts(d)} == {" d4", "d5 ", "bad id", "d/6", "x" * 129, "-d8", "d9\t"}
    refused = fleet.quarantine("devices")
    assert set(refused["reason"]) == {"invalid_device_id"}
    assert sorted(r["device"] for r in refused["record"]) == sorted(d for d in IDS if not api_accepts(d))

    telemetry = fleet.quarantine("telemetry", DAY)
    assert sorted(zip((r["device"] for r in telemetry["record"]), telemetry["reason"])) == sorted(
        (d, "invalid_device_id") for d in IDS if not api_accepts(d))
    assert set(fleet.read("telemetry", DAY)["device_id"]) == set(DEVICES) | {d for d in IDS if api_accepts(d)}


@pytest.mark.parametrize("device_id", [" WH-1001", "WH-1001 ", "WH-1001\n"])
def test_api_refuses_surrounding_whitespace_as_ingestion_does(device_id: str):
    assert not api_accepts(device_id)
    assert api_accepts(device_id.strip())
