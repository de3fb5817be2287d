"""Online features: the newest feature row of each device, whatever order partitions are run in."""

from __future__ import annotations

import pandas as pd

from iot_mlops.features import get_device_features
from iot_mlops_tests.fleet import DAYS, DEVICES, Fleet, clean_day

LAST = DAYS[-1]


def test_newest_row_wins_and_older_partitions_do_not_replace_it(fleet: Fleet):
    assert get_device_features(fleet.name, "d1", fleet.lake_root) is None
    assert fleet.materialize(days=(DAYS[1], LAST)).success
    assert fleet.materialize("features", day=LAST).success
    frame = fleet.read("features", LAST)
    expected = frame.sort_values("ts").groupby("device_id").tail(1).set_index("device_id")

    assert fleet.materialize("features", day=DAYS[1]).success
    for device in DEVICES:
        got = get_device_features(fleet.name, device, fleet.lake_root)
        assert got["ts"] == expected.loc[device, "ts"]
        assert got["temp_mean_3h"] == expected.loc[device, "temp_mean_3h"]
    assert get_device_features(fleet.name, "ghost", fleet.lake_root) is None
    assert len(fleet.read("online_features")) == len(DEVICES)
    # conftest points IOT_MLOPS_LAKE_DIR at the fleet's lake, the default root.
    assert get_device_features(fleet.name, "d1") == get_device_features(fleet.name, "d1", fleet.lake_root)


def test_recomputed_newest_partition_replaces_its_rows(fleet: Fleet):
    assert fleet.materialize("devices", "telemetry", "events", "features", day=LAST).success
    before = get_device_features(fleet.name, "d2", fleet.lake_root)
    fleet.write("telemetry", [{**r, "temp": 90.0} if r["device"] == "d2" else r for r in clean_day(LAST)], LAST)
    assert fleet.materialize("telemetry", "features", day=LAST).success
    after = get_device_features(fleet.name, "d2", fleet.lake_root)
    assert after["ts"] == before["ts"]
    assert (before["temp_mean_3h"], after["temp_mean_3h"]) != (90.0, 90.0)
    assert after["temp_mean_3h"] == 90.0


def test_device_silent_on_the_last_days_keeps_its_own_newest_row(fleet: Fleet):
    for day in DAYS[2:]:
        fleet.write("telemetry", [r for r in clean_day(day) if r["device"] != "d3"], day)
    assert fleet.materialize(days=(DAYS[0], LAST)).success
    assert fleet.materialize("features", days=(DAYS[1], LAST)).success
    frame = pd.concat([fleet.read("features", d) for d in DAYS[1:]])
    newest = frame.sort_values("ts").groupby("device_id").tail(1).set_index("device_id")
    assert newest.loc["d3", "ts"].date() == DAYS[2] < newest.loc["d1", "ts"].date()
    online = fleet.read("online_features").set_index("device_id")
    assert sorted(online.index) == DEVICES
    pd.testing.assert_frame_equal(online.sort_index(), newest.sort_index()[online.columns])
