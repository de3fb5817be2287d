"""Telemetry data-quality checks: each tripped by data built to trip it, none on clean data; the Dagster wiring."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from iot_mlops.ingestion.ingest import ingest_devices, ingest_events, ingest_telemetry
from iot_mlops.lake import connect
from iot_mlops.monitoring.device_history import device_history
from iot_mlops.monitoring.quality import CHECKS, ERROR, OK, WARN, QualityError, QualityResult, check_partition, severity
from iot_mlops.monitoring.quality_assets import quality_assets
from iot_mlops.monitoring.quality_store import quality_history, stored_results, write_quality
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import source_folder
from iot_mlops.profiles.monitoring import Severity
from iot_mlops_tests.fleet import DAYS, DEVICES, RANGE_END, RANGE_START, Fleet, check_results, clean_day, materializations

DAY = DAYS[1]
STEP = 10  # minutes between samples in the noisy fleet
SLOTS = 24 * 60 // STEP  # 144 expected samples per device and day
ROWS = SLOTS * len(DEVICES)  # 432


@pytest.fixture
def noisy(fleet: Fleet) -> Fleet:
    """The tiny fleet sampled every 10 minutes with noisy sensors."""
    fleet.spec["sampling_interval"] = f"{STEP}min"
    fleet.write_profile()
    return fleet


def noisy_rows(day: date = DAY, seed: int = 7) -> list[dict]:
    """A clean day: temp ~ N(50, 0.5), pressure ~ N(3, 0.05), every STEP minutes for every device."""
    rng = np.random.default_rng(seed)
    start = datetime.combine(day, datetime.min.time())
    return [
        {"device": d, "time": (start + timedelta(minutes=STEP * i)).strftime("%Y-%m-%d %H:%M:%S"),
         "temp": round(50 + rng.normal(0, 0.5), 4), "pressure": round(3 + rng.normal(0, 0.05), 4)}
        for d in DEVICES for i in range(SLOTS)
    ]


def at(rows: list[dict], device: str, index: int) -> dict:
    """The device's index-th sample (rows are grouped by device, in time order)."""
    return rows[DEVICES.index(device) * SLOTS + index]


def run_checks(fleet: Fleet, rows: list[dict], day: date = DAY, events: bool = False) -> dict[str, QualityResult]:
    """Ingest the rows (and with `events`, the day's event files) through the real ingestion, then run the checks."""
    fleet.write("telemetry", rows, day)
    profile = fleet.write_profile()
    folder = source_folder(profile, fleet.profile_dir, fleet.landing_root)
    with connect() as con:
        ingest_devices(con, fleet.lake, profile, folder)
        ingest_telemetry(con, fleet.lake, profile, folder, [day])
        if events:
            ingest_events(con, fleet.lake, profile, folder, [day])
        results = check_partition(con, fleet.lake, profile, day)
    assert [r.check for r in results] == list(CHECKS)
    return {r.check: r for r in results}


def test_clean_day_trips_nothing(noisy: Fleet):
    results = run_checks(noisy, noisy_rows())
    assert {c: (r.value, r.severity) for c, r in results.items()} == {c: (0.0, OK) for c in CHECKS}
    assert results["quarantine_share"].details["rows_read"] == ROWS
    assert results["stuck_sensors"].details["pairs"] == len(DEVICES) * 2


def test_stuck_sensor(noisy: Fleet):
    rows = noisy_rows()
    for i in range(10, 29):  # 19 equal samples: 3 hours flat
        at(rows, "d1", i)["temp"] = 42.0
    for i in range(40, 45):  # 40 minutes flat: shorter than the 1 h window
        at(rows, "d2", i)["temp"] = 43.0
    for i in range(50, 80):  # 5 hours at the sensor's minimum: a resting state
        at(rows, "d3", i)["pressure"] = 0.0
    result = run_checks(noisy, rows)["stuck_sensors"]
    assert result.value == pytest.approx(1 / 6)
    assert result.severity == ERROR and not result.passed
    (worst,) = result.details["worst"]
    assert (worst["device_id"], worst["sensor"], worst["minutes"]) == ("d1", "temp", 180.0)
    assert result.details["by_sensor"] == {"temp": 1}

    noisy.spec["monitoring"] = {"quality": {"stuck_ignore_bounds": False, "stuck_share": {"warn": 0.2, "error": 0.5}}}
    result = run_checks(noisy, rows)["stuck_sensors"]
    assert result.value == pytest.approx(2 / 6)
    assert result.severity == WARN
    assert {(w["device_id"], w["sensor"]) for w in result.details["worst"]} == {("d1", "temp"), ("d3", "pressure")}


def test_sensor_exceptions_in_the_profile_set_its_own_stuck_and_spike_checks(noisy: Fleet):
    rows = noisy_rows()
    for i in range(10, 29):  # temp flat 3 hours on d1
        at(rows, "d1", i)["temp"] = 42.0
    for i in range(40, 58):  # pressure flat 3 hours on d2
        at(rows, "d2", i)["pressure"] = 3.5
    for i in (30, 90):  # two temp spikes on d3
        at(rows, "d3", i)["temp"] += 40
    results = run_checks(noisy, rows)
    assert (results["stuck_sensors"].details["stuck_pairs"], results["spike_rate"].details["spike_rows"]) == (2, 2)

    # temp is constant by design and bursty: neither check watches it; pressure may rest 4 hours.
    noisy.spec["monitoring"] = {"sensors": {"temp": {"ignore": ["stuck", "spikes"]}, "pressure": {"stuck_window": "4h"}}}
    results = run_checks(noisy, rows)
    stuck = results["stuck_sensors"]
    assert (stuck.value, stuck.severity, stuck.details["pairs"], stuck.details["not_watched"]) == (0.0, OK, 3, ["temp"])
    assert (results["spike_rate"].value, results["spike_rate"].severity) == (0.0, OK)

    noisy.spec["monitoring"] = {"sensors": {"pressure": {"stuck_window": "2h"}, "temp": {"spike_zscore": 1000}}}
    results = run_checks(noisy, rows)
    assert results["stuck_sensors"].details["by_sensor"] == {"pressure": 1, "temp": 1}
    assert results["spike_rate"].details["spike_rows"] == 0


def test_a_coarse_sensor_must_repeat_longer_than_chance_makes_likely(noisy: Fleet):
    rows = noisy_rows()
    for row in rows:  # whole degrees of N(50, 0.5): about one step in three repeats
        row["temp"] = round(row["temp"])
    healthy = run_checks(noisy, rows)["stuck_sensors"]
    assert healthy.value == 0.0 and healthy.details["lengthened_minutes"]["temp"] > 60
    for i in range(20, 50):  # 5 hours frozen on d1
        at(rows, "d1", i)["temp"] = 50
    frozen = run_checks(noisy, rows)["stuck_sensors"]
    assert frozen.details["by_sensor"] == {"temp": 1} and frozen.details["worst"][0]["minutes"] >= 290


def test_a_sensor_constant_on_every_device_is_constant_by_design_unless_it_changed_yesterday(noisy: Fleet):
    constant = [{**row, "pressure": 3.0} for row in noisy_rows(DAYS[0])]
    result = run_checks(noisy, constant, DAYS[0])["stuck_sensors"]  # the fleet's first day: nothing to compare with
    assert (result.value, result.details["constant_by_design"]) == (0.0, ["pressure"])
    assert run_checks(noisy, [{**row, "pressure": 3.0} for row in noisy_rows()])["stuck_sensors"].value == 0.0

    run_checks(noisy, noisy_rows(DAYS[0]), DAYS[0])  # yesterday pressure moved on every device
    frozen = run_checks(noisy, [{**row, "pressure": 3.0} for row in noisy_rows()])["stuck_sensors"]
    assert frozen.details["by_sensor"] == {"pressure": len(DEVICES)} and frozen.severity == ERROR


def test_a_run_carries_each_days_figures_to_the_next_day(noisy: Fleet):
    yesterday = noisy_rows(DAYS[0])
    for i in range(SLOTS):  # d2's pressure constant all of yesterday
        at(yesterday, "d2", i)["pressure"] = 3.5
    run_checks(noisy, [r for r in yesterday if r["device"] != "d3"], DAYS[0])  # d3 silent yesterday
    today = noisy_rows()
    for i in range(SLOTS):
        at(today, "d2", i)["pressure"] = 3.5
    run_checks(noisy, today)
    # The checks that use yesterday, in full (the others' float sums may differ in the last bit between runs).
    profile, figures = noisy.profile(), lambda rs: [(r.check, r.value, r.severity, r.details) for r in rs[:2]]  # noqa: E731
    with connect() as con:
        carried: dict = {}
        check_partition(con, noisy.lake, profile, DAYS[0], carried=carried)
        assert len(carried) == 1
        read = device_history(con, noisy.lake, profile, DAY)
        assert device_history(con, noisy.lake, profile, DAY, carried) == read
        assert (read.reported_yesterday, read.constant_yesterday) == ({"d1", "d2"}, {("d2", "pressure")})
        assert figures(check_partition(con, noisy.lake, profile, DAY, carried=carried)) == figures(
            check_partition(con, noisy.lake, profile, DAY))


def test_dropouts(noisy: Fleet):
    run_checks(noisy, noisy_rows(DAYS[0]), DAYS[0])  # a day before: the devices were alive at midnight
    rows = noisy_rows()
    gone = {id(at(rows, "d2", i)) for i in range(44)}  # d2 misses 44 of its 144 samples
    extra = [{**at(rows, "d3", i), "time": (datetime.fromisoformat(at(rows, "d3", i)["time"]) + timedelta(minutes=5)).isoformat(" ")}
             for i in range(20)]  # d3 samples twice as often for a while: no credit for d2's gap
    result = run_checks(noisy, [r for r in rows if id(r) not in gone] + extra)["dropouts"]
    assert result.value == pytest.approx(44 / ROWS)
    assert result.severity == WARN
    assert result.details["missing_samples"] == 44
    assert (result.details["devices_above_warn"], result.details["devices_above_error"]) == (1, 1)
    assert result.details["worst"] == [{"device_id": "d2", "missing": 44, "missing_share": pytest.approx(44 / SLOTS)}]


def test_dropouts_count_only_each_devices_active_life(noisy: Fleet):
    """d3 did not report yesterday and starts at 08:00, d1 fails at 12:00 and falls silent: no dropout for either;
    d2's midday gap still is one."""
    run_checks(noisy, [r for r in noisy_rows(DAYS[0]) if r["device"] != "d3"], DAYS[0])
    rows = noisy_rows()
    gone = {id(at(rows, "d3", i)) for i in range(48)} | {id(at(rows, "d1", i)) for i in range(72, SLOTS)}
    gone |= {id(at(rows, "d2", i)) for i in range(60, 104)}  # 44 samples around noon
    noisy.write_events(DAY, "failure", [("d1", datetime.combine(DAY, datetime.min.time()) + timedelta(hours=12), "impeller")])
    for kind in ("maintenance", "error"):
        noisy.write_events(DAY, kind, [])
    result = run_checks(noisy, [r for r in rows if id(r) not in gone], events=True)["dropouts"]
    expected = 72 + SLOTS + (SLOTS - 48)  # d1 until its failure, d2 all day, d3 from its first reading
    assert result.details["expected_samples"] == expected and result.details["missing_samples"] == 44
    assert result.value == pytest.approx(44 / expected)
    assert (result.details["devices_starting_today"], result.details["devices_failed_today"]) == (1, 1)
    assert [w["device_id"] for w in result.details["worst"]] == ["d2"]

    # A day after a missing partition: nothing says d3 started that day, its morning counts as missing.
    later = DAYS[2]
    rows = [r for r in noisy_rows(later) if not (r["device"] == "d3" and r["time"] < f"{later} 08:00")]
    assert run_checks(noisy, rows, later)["dropouts"].details["missing_samples"] == 48


def test_on_the_fleets_first_day_every_device_starts_at_its_first_reading(noisy: Fleet):
    rows = [r for r in noisy_rows() if not (r["device"] == "d3" and r["time"] < f"{DAY} 08:00")]
    result = run_checks(noisy, rows)["dropouts"]
    assert (result.value, result.details["devices_starting_today"]) == (0.0, 1)


def test_a_sensor_constant_all_yesterday_is_not_newly_stuck(noisy: Fleet):
    """d1's pressure is constant by design (yesterday all day, today all day); d2's temp flat-lines 3 h today."""
    yesterday = noisy_rows(DAYS[0])
    for i in range(SLOTS):
        at(yesterday, "d1", i)["pressure"] = 3.5
    run_checks(noisy, yesterday, DAYS[0])
    rows = noisy_rows()
    for i in range(SLOTS):
        at(rows, "d1", i)["pressure"] = 3.5
    for i in range(10, 29):
        at(rows, "d2", i)["temp"] = 42.0
    result = run_checks(noisy, rows)["stuck_sensors"]
    assert result.details["stuck_pairs"] == 1 and result.details["constant_since_yesterday"] == 1
    assert [(w["device_id"], w["sensor"]) for w in result.details["worst"]] == [("d2", "temp")]
    assert result.value == pytest.approx(1 / 6)


def test_silent_fleet_is_all_missing(noisy: Fleet):
    result = run_checks(noisy, [{**r, "device": "zz"} for r in noisy_rows()[:10]])["dropouts"]
    assert (result.value, result.severity) == (1.0, ERROR)
    assert result.details["silent_devices"] == len(DEVICES)


def test_out_of_range_rows(noisy: Fleet):
    rows = noisy_rows()
    for i in range(5):
        at(rows, "d1", 20 + i)["temp"] = 150.0  # max 100
    for i in range(2):
        at(rows, "d2", 60 + i)["pressure"] = -1.0  # min 0
    results = run_checks(noisy, rows)
    result = results["out_of_range_share"]
    assert result.value == pytest.approx(7 / ROWS)
    assert result.severity == ERROR  # default error threshold 0.01
    assert result.details["by_sensor"] == {"temp": 5, "pressure": 2}
    assert result.details["top_devices"] == [{"device_id": "d1", "rows": 5}, {"device_id": "d2", "rows": 2}]
    assert results["quarantine_share"].value == pytest.approx(7 / ROWS)


def test_spikes_are_excursions_not_level_shifts(noisy: Fleet):
    rows = noisy_rows()
    for i in (30, 90):  # one sample jumps 40 degrees and comes back
        at(rows, "d3", i)["temp"] += 40
    for i in range(80, SLOTS):  # pressure steps up and stays: a change of state, not a spike
        at(rows, "d1", i)["pressure"] += 2
    result = run_checks(noisy, rows)["spike_rate"]
    assert result.details["spike_rows"] == 2
    assert result.value == pytest.approx(2 / ROWS)
    assert result.severity == WARN  # warn 0.001 < 0.0046 <= error 0.01
    assert result.details["by_sensor"] == {"temp": 2}
    assert result.details["top_devices"] == [{"device_id": "d3", "rows": 2}]


def test_quarantined_rows(noisy: Fleet):
    rows = noisy_rows()
    for i in range(3):
        at(rows, "d2", 100 + i)["temp"] = "n/a"
    strangers = [{**r, "device": "zz"} for r in noisy_rows(seed=1)[:10]]
    results = run_checks(noisy, rows + strangers)
    result = results["quarantine_share"]
    assert result.value == pytest.approx(13 / (ROWS + 10))
    assert result.severity == WARN  # warn 0.01 < 0.029 <= error 0.05
    assert result.details["by_reason"] == {"unknown_device": 10, "non_numeric:temp": 3}
    assert results["out_of_range_share"].value == 0.0


@pytest.mark.parametrize(("bad", "expected"), [(9, WARN), (44, ERROR), (0, OK)])
def test_profile_thresholds_set_severity(noisy: Fleet, bad: int, expected: str):
    noisy.spec["monitoring"] = {"quality": {"out_of_range_share": {"warn": 0.01, "error": 0.05}}}
    rows = noisy_rows()
    for i in range(bad):
        rows[i]["temp"] = 101.0
    result = run_checks(noisy, rows)["out_of_range_share"]
    assert (result.severity, result.threshold_warn, result.threshold_error) == (expected, 0.01, 0.05)


def test_severity_boundaries():
    band = Severity(warn=0.1, error=0.2)
    assert [severity(v, band) for v in (0.0, 0.1, 0.1001, 0.2, 0.2001)] == [OK, OK, WARN, WARN, ERROR]


def test_missing_partition_is_an_error(noisy: Fleet):
    with connect() as con, pytest.raises(QualityError, match="materialize tiny/telemetry"):
        check_partition(con, noisy.lake, noisy.profile(), DAY)


def test_stored_results_and_history(noisy: Fleet):
    ok = [QualityResult(c, 0.0, OK, 0.1, 0.2, {"n": 1}) for c in CHECKS]
    bad = [*ok[:2], QualityResult("out_of_range_share", 0.5, ERROR, 0.1, 0.2, {"by_sensor": {"temp": 3}}), *ok[3:]]
    with connect() as con:
        write_quality(con, noisy.lake, noisy.name, DAYS[0], ok)
        write_quality(con, noisy.lake, noisy.name, DAYS[2], bad)
        write_quality(con, noisy.lake, noisy.name, DAYS[3], [*ok[:4], QualityResult("quarantine_share", 0.15, WARN, 0.1, 0.2)])
    assert quality_history(noisy.lake, noisy.name) == [(DAYS[0], OK), (DAYS[2], ERROR), (DAYS[3], WARN)]
    frame = noisy.read("data_quality", DAYS[2])
    assert list(frame.columns) == ["day", "check", "value", "severity", "threshold_warn", "threshold_error", "details",
                                  "telemetry_version"]
    assert list(frame["check"]) == list(CHECKS)
    assert json.loads(frame.loc[2, "details"]) == {"by_sensor": {"temp": 3}}
    assert not list(noisy.file("data_quality", DAYS[2]).parent.glob(".tmp-*"))
    assert quality_history(noisy.lake, "nobody") == []


def materialize(fleet: Fleet, **run):
    profile = fleet.profile()
    assets = [*fleet.assets(), *quality_assets(FleetContext.of(profile, fleet.profile_dir))]
    selection = dg.AssetSelection.assets(*(dg.AssetKey([fleet.name, t]) for t in ("devices", "telemetry", "data_quality")))
    return dg.materialize(assets, selection=selection, resources=fleet.resources(), instance=dg.DagsterInstance.ephemeral(), **run)


def test_materialize_checks_and_summary(fleet: Fleet):
    rows = clean_day(DAY)
    for row in rows[3:5]:
        row["temp"] = 150.0  # 2 of 72 rows out of range
    fleet.write("telemetry", rows, DAY)
    result = materialize(fleet, partition_key=DAY.isoformat())
    assert result.success
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name in CHECKS]
    assert sorted(e.check_name for e in evaluations) == sorted(CHECKS)
    assert all(e.partition == DAY.isoformat() and e.target_materialization_data is not None for e in evaluations)
    checks = check_results(result)
    failed = {name: checks[("telemetry", name)].severity for name in CHECKS if not checks[("telemetry", name)].passed}
    assert failed == {"out_of_range_share": dg.AssetCheckSeverity.ERROR, "quarantine_share": dg.AssetCheckSeverity.WARN}
    assert checks[("telemetry", "out_of_range_share")].metadata["value"].value == pytest.approx(2 / 72)

    frame = fleet.read("data_quality", DAY)
    assert dict(zip(frame["check"], frame["severity"])) == {**dict.fromkeys(CHECKS, OK), "out_of_range_share": ERROR, "quarantine_share": WARN}
    meta = materializations(result)[("data_quality", DAY.isoformat())]
    assert (meta["checks_ok"], meta["checks_warn"], meta["checks_error"]) == (3, 1, 1)
    assert meta["out_of_range_share"] == pytest.approx(2 / 72)
    assert "| out_of_range_share |" in meta["results"]


def test_materialize_range_run_checks_each_day(fleet: Fleet):
    rows = clean_day(DAYS[2])
    for row in rows[:24]:
        row["pressure"] = 99.0  # all of d1's day out of range
    fleet.write("telemetry", rows, DAYS[2])
    result = materialize(fleet, tags={RANGE_START: DAYS[1].isoformat(), RANGE_END: DAYS[2].isoformat()})
    assert result.success
    by_day = {(e.partition, e.check_name): e for e in result.get_asset_check_evaluations() if e.check_name in CHECKS}
    assert set(by_day) == {(d.isoformat(), c) for d in DAYS[1:3] for c in CHECKS}
    assert all(by_day[(DAYS[1].isoformat(), c)].passed for c in CHECKS)
    assert not by_day[(DAYS[2].isoformat(), "out_of_range_share")].passed
    assert not by_day[(DAYS[2].isoformat(), "dropouts")].passed  # d1 has no valid sample left
    assert quality_history(fleet.lake, fleet.name) == [(DAYS[1], OK), (DAYS[2], ERROR)]


def test_checks_reuse_data_quality_results_of_the_same_telemetry_and_recompute_after_a_rewrite(fleet: Fleet):
    fleet.write("telemetry", clean_day(DAY), DAY)
    assert materialize(fleet, partition_key=DAY.isoformat()).success
    stored = fleet.read("data_quality", DAY)
    version = fleet.lake.partition_version(fleet.name, "telemetry", DAY).name
    assert set(stored["telemetry_version"]) == {version}
    with connect() as con:
        reused = stored_results(con, fleet.lake, fleet.name, DAY, version)
        assert [r.check for r in reused] == list(CHECKS) and all(r.severity == OK for r in reused)
        fresh = check_partition(con, fleet.lake, fleet.profile(), DAY)
        figures = lambda r: (r.check, r.value, r.severity, r.threshold_warn, r.threshold_error, sorted(r.details))  # noqa: E731
        assert [figures(r) for r in reused] == [figures(r) for r in fresh]

    # New telemetry for the day, data_quality not run again: nothing stored matches, the checks compute afresh.
    rows = clean_day(DAY)
    for row in rows[3:5]:
        row["temp"] = 150.0
    fleet.write("telemetry", rows, DAY)
    assert fleet.materialize("telemetry", day=DAY).success
    with connect() as con:
        assert stored_results(con, fleet.lake, fleet.name, DAY, fleet.lake.partition_version(fleet.name, "telemetry", DAY).name) is None
