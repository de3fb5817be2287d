"""Labels: a failure at T marks exactly the rows with T in [ts, ts + horizon); unknown futures stay NULL."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pandas as pd
import pytest

from iot_mlops.lake import connect
from iot_mlops.training.labels import LabelInputError, compute_labels
from iot_mlops_tests.fleet import DAYS, check_results, materializations, stamp
from iot_mlops_tests.training.tiny import ALL_DAYS, HORIZON, INGEST, TinyPipeline

COMPONENTS = ["impeller", "seal"]
# (device, failure time, component); one sits exactly on a feature time, one between two, one across midnight.
FAILURES = [
    ("d1", stamp(DAYS[1], 10), "seal"),
    ("d2", stamp(DAYS[1], 14, 30), "impeller"),
    ("d3", stamp(DAYS[2], 2), "impeller"),
]


def expected_label(device: str, ts: pd.Timestamp, component: str) -> int:
    """Derived from the construction: 1 iff one of the device's failures of the component is in [ts, ts + H)."""
    return int(any(d == device and c == component and ts <= pd.Timestamp(t) < ts + HORIZON for d, t, c in FAILURES))


def write_failures(tiny: TinyPipeline) -> None:
    by_day: dict = {}
    for device, ts, component in FAILURES:
        by_day.setdefault(ts.date(), []).append((device, ts, component))
    for day, rows in by_day.items():
        tiny.fleet.write_events(day, "failure", rows)
    # Maintenance and errors are events too, but never labels.
    tiny.fleet.write_events(DAYS[1], "maintenance", [("d3", stamp(DAYS[1], 8), "seal")])
    tiny.fleet.write_events(DAYS[1], "error", [("d3", stamp(DAYS[1], 9), "E1")])


def test_a_failure_labels_exactly_the_rows_whose_horizon_contains_it(tiny: TinyPipeline):
    write_failures(tiny)
    assert tiny.run(*INGEST, days=ALL_DAYS).success
    result = tiny.run("labels", days=ALL_DAYS)
    assert result.success

    features, labels = tiny.read("features", DAYS), tiny.read("labels", DAYS)
    # One label row per feature row, keyed the same way.
    assert sorted(zip(labels["device_id"], labels["ts"])) == sorted(zip(features["device_id"], features["ts"]))
    coverage = datetime.combine(DAYS[-1] + timedelta(days=1), time())  # every events partition is there
    complete = labels[labels["label_complete"]]
    assert (complete["ts"] + HORIZON <= coverage).all()
    for comp in COMPONENTS:
        expected = [expected_label(d, t, comp) for d, t in zip(complete["device_id"], complete["ts"])]
        assert complete[f"fails_{comp}"].astype(int).tolist() == expected, comp
    # The boundaries by hand: d1's seal fails at 10:00 on day 2, so 04:00 is out ([04:00, 10:00) misses it)
    # and 05:00..10:00 are in (10:00 itself is in [10:00, 16:00)); 11:00 is after the failure.
    d1 = complete[complete["device_id"] == "d1"].set_index("ts")["fails_seal"]
    assert [d1[pd.Timestamp(stamp(DAYS[1], h))] for h in range(4, 12)] == [0, 1, 1, 1, 1, 1, 1, 0]
    # The failure right after midnight reaches back into the previous day's partition.
    d3 = complete[complete["device_id"] == "d3"].set_index("ts")["fails_impeller"]
    assert d3[pd.Timestamp(stamp(DAYS[1], 21))] == 1 and d3[pd.Timestamp(stamp(DAYS[1], 20))] == 0

    meta = materializations(result)[("labels", DAYS[1].isoformat())]
    assert meta["positives"] == {c: int(complete[f"fails_{c}"].sum()) for c in COMPONENTS}
    assert meta["events_until"] == str(coverage)


def test_rows_whose_horizon_passes_the_last_events_partition_are_null_and_reported(tiny: TinyPipeline):
    write_failures(tiny)
    # Events stop one day before the features: the last day's future is unknown.
    assert tiny.run("devices", "telemetry", "features", days=ALL_DAYS).success
    assert tiny.run("events", days=(DAYS[0], DAYS[2])).success
    result = tiny.run("labels", days=ALL_DAYS)
    assert result.success  # incomplete labels are a warning, not a failed materialization

    labels = tiny.read("labels", DAYS)
    coverage = datetime.combine(DAYS[2] + timedelta(days=1), time())
    unknown = labels["ts"] + HORIZON > coverage
    assert unknown.sum() > 0 and (~unknown).sum() > 0
    assert (labels["label_complete"] == ~unknown).all()
    for comp in COMPONENTS:
        assert labels.loc[unknown, f"fails_{comp}"].isna().all()  # never "no failure"
        assert labels.loc[~unknown, f"fails_{comp}"].notna().all()

    check = check_results(result)[("labels", "labels_complete")]
    assert not check.passed
    assert check.metadata["incomplete_rows"].value == int(unknown.sum())
    assert check.metadata["events_until"].value == str(coverage)

    # Once the last day's events arrive, relabelling fills in what became knowable.
    assert tiny.run("events", day=DAYS[3]).success
    assert tiny.run("labels", days=ALL_DAYS).success
    relabelled = tiny.read("labels", DAYS)
    still_unknown = relabelled["ts"] + HORIZON > coverage + timedelta(days=1)
    assert (relabelled["label_complete"] == ~still_unknown).all()
    assert still_unknown.sum() < unknown.sum()

    # Labelling only days whose horizon is covered passes the check.
    covered = tiny.run("labels", days=(DAYS[0], DAYS[2]))
    assert check_results(covered)[("labels", "labels_complete")].passed


def test_a_gap_in_events_ends_what_labels_know(tiny: TinyPipeline):
    """Events for days 1, 2 and 4 but not 3: labels are known only up to the gap, even past it."""
    tiny.fleet.write_events(DAYS[3], "failure", [("d2", stamp(DAYS[3], 5), "seal")])
    assert tiny.run("devices", "telemetry", "features", days=ALL_DAYS).success
    for day in (DAYS[0], DAYS[1], DAYS[3]):
        assert tiny.run("events", day=day).success
    with connect() as con:
        report = compute_labels(con, tiny.fleet.lake, tiny.fleet.profile(), DAYS)
    gap = datetime.combine(DAYS[2], time())
    assert report.events_until == gap
    labels = tiny.read("labels", DAYS)
    after = labels["ts"] + HORIZON > gap
    assert (labels["label_complete"] == ~after).all()
    assert labels.loc[after, "fails_seal"].isna().all()  # the day-4 failure is known, but day 3 is not
    assert report.incomplete_rows == int(after.sum())
    assert report.complete_rows == int((~after).sum())
    assert report.rows == {d: int((labels["ts"].dt.date == d).sum()) for d in DAYS}


def test_rows_before_the_first_events_partition_are_unknown(tiny: TinyPipeline):
    """Events ingested only from day 2: day 1's failures were never read, so its labels are NULL, not 0."""
    tiny.fleet.write_events(DAYS[0], "failure", [("d1", stamp(DAYS[0], 12), "seal")])
    assert tiny.run("devices", "telemetry", "features", days=ALL_DAYS).success
    assert tiny.run("events", days=(DAYS[1], DAYS[3])).success
    result = tiny.run("labels", days=ALL_DAYS)
    assert result.success

    labels = tiny.read("labels", DAYS)
    since = datetime.combine(DAYS[1], time())
    until = datetime.combine(DAYS[3] + timedelta(days=1), time())
    known = (labels["ts"] >= since) & (labels["ts"] + HORIZON <= until)
    assert (labels["label_complete"] == known).all()
    assert labels.loc[labels["ts"] < since, "fails_seal"].isna().all()
    check = check_results(result)[("labels", "labels_complete")]
    assert not check.passed and check.metadata["incomplete_rows"].value == int((~known).sum())
    assert check.metadata["events_from"].value == str(since)


def test_labels_need_events_and_features(tiny: TinyPipeline):
    profile = tiny.fleet.profile()
    assert tiny.run("devices", "telemetry", "features", day=DAYS[0]).success
    with connect() as con, pytest.raises(LabelInputError, match="materialize tiny/events first"):
        compute_labels(con, tiny.fleet.lake, profile, [DAYS[0]])
    assert tiny.run("events", days=ALL_DAYS).success
    with connect() as con, pytest.raises(LabelInputError, match=f"no features for {DAYS[1]}"):
        compute_labels(con, tiny.fleet.lake, profile, [DAYS[0], DAYS[1]])


def test_rows_that_saw_a_failed_device_are_out_of_service_until_its_repair(tiny: TinyPipeline):
    """A feature row at t sees readings in [t - 1h, t): the first one after a failure sees the failed device."""
    write_failures(tiny)
    # d2's impeller is repaired at 17:15 (a seal job at 15:00 does not repair it); d3's is replaced at the failure time.
    tiny.fleet.write_events(DAYS[1], "maintenance", [("d3", stamp(DAYS[1], 8), "seal"), ("d2", stamp(DAYS[1], 15), "seal"),
                                                     ("d2", stamp(DAYS[1], 17, 15), "impeller")])
    # d1's next seal job comes 23 h after its failure, past the 6 h horizon: routine, not the repair.
    tiny.fleet.write_events(DAYS[2], "maintenance", [("d3", stamp(DAYS[2], 2), "impeller"), ("d1", stamp(DAYS[2], 9), "seal")])
    assert tiny.run(*INGEST, days=ALL_DAYS).success
    result = tiny.run("labels", days=ALL_DAYS)
    assert result.success

    labels = tiny.read("labels", DAYS)
    out = labels[labels["out_of_service"]]
    expected = {("d1", stamp(DAYS[1], 11)),  # no repair logged: the one row that saw the 10:00 failure
                *(("d2", stamp(DAYS[1], h)) for h in (15, 16, 17, 18)),  # 18:00 still sees 17:00..17:15
                ("d3", stamp(DAYS[2], 3))}
    assert set(zip(out["device_id"], out["ts"].tolist())) == expected
    # Before the failure, labels are as before: d1's 05:00..10:00 are positive; after the repair rows are normal again.
    d1 = labels[labels["device_id"] == "d1"].set_index("ts")
    assert [d1.loc[pd.Timestamp(stamp(DAYS[1], h)), "fails_seal"] for h in range(4, 13)] == [0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert not d1.loc[pd.Timestamp(stamp(DAYS[1], 10)), "out_of_service"]
    assert not d1.loc[pd.Timestamp(stamp(DAYS[1], 12)), "out_of_service"]
    d2 = labels[labels["device_id"] == "d2"].set_index("ts")
    assert d2.loc[pd.Timestamp(stamp(DAYS[1], 14)), "fails_impeller"] == 1
    assert not d2.loc[pd.Timestamp(stamp(DAYS[1], 19)), "out_of_service"]
    assert labels.loc[labels["out_of_service"], "label_complete"].all()  # still known rows: kept out, not unknown

    meta = materializations(result)
    assert meta[("labels", DAYS[1].isoformat())]["rows_out_of_service"] == len(expected)  # one report for the backfill


def test_the_profile_sets_how_long_an_unrepaired_device_is_out(tiny: TinyPipeline):
    tiny.fleet.write_events(DAYS[1], "failure", [("d1", stamp(DAYS[1], 10), "seal")])
    assert tiny.run(*INGEST, days=ALL_DAYS).success
    profile = tiny.fleet.profile()
    profile = profile.model_copy(update={"target": profile.target.model_copy(update={"out_of_service": timedelta(hours=3)})})
    with connect() as con:
        report = compute_labels(con, tiny.fleet.lake, profile, DAYS)
    labels = tiny.read("labels", DAYS)
    out = labels[labels["out_of_service"]]
    assert out["device_id"].unique().tolist() == ["d1"]
    assert sorted(out["ts"].tolist()) == [stamp(DAYS[1], h) for h in (11, 12, 13)]
    assert report.out_of_service_rows == 3
