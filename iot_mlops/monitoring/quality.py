"""IoT data-quality checks of one telemetry partition, computed in DuckDB in two passes over the valid rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from iot_mlops.lake import DATA_FILE, QUARANTINE_FILE, Lake, ident, parquet, sql_str
from iot_mlops.monitoring.device_history import DayFigures, DeviceHistory, device_history
from iot_mlops.monitoring.repeats import repeat_rates, required_run
from iot_mlops.profiles.monitoring import Severity
from iot_mlops.profiles.schema import FleetProfile

CHECKS = ("stuck_sensors", "dropouts", "out_of_range_share", "spike_rate", "quarantine_share")
OK, WARN, ERROR = "OK", "WARN", "ERROR"
RANK = {OK: 0, WARN: 1, ERROR: 2}
TABLE = "data_quality"
TOP = 10  # offenders listed in details
_US = 1_000_000
WINDOW = "WINDOW w AS (PARTITION BY device_id ORDER BY ts)"


class QualityError(RuntimeError):
    """The partition to check is missing or unreadable."""


@dataclass(frozen=True)
class QualityResult:
    """One check of one day: its value, the severity its thresholds give, and the offenders."""

    check: str
    value: float
    severity: str
    threshold_warn: float
    threshold_error: float
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.severity == OK


def severity(value: float, thresholds: Severity) -> str:
    """ERROR above the error threshold, WARN above the warn threshold, else OK."""
    if value > thresholds.error:
        return ERROR
    if value > thresholds.warn:
        return WARN
    return OK


def worst(severities: list[str]) -> str:
    return max(severities, key=RANK.__getitem__, default=OK)


def _result(check: str, value: float, thresholds: Severity, details: dict) -> QualityResult:
    return QualityResult(check, float(value), severity(value, thresholds), thresholds.warn, thresholds.error, details)


def check_partition(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, day: date,
                    folder: Path | None = None, carried: dict | None = None) -> list[QualityResult]:
    """The five checks of one day's telemetry (valid rows) and quarantine, in CHECKS order; `folder` is the
    telemetry version to check (default: the current one). `carried`: kept by the caller across the days of a
    run, so the next day reads this day's figures from it instead of its telemetry again."""
    fleet, spec = profile.name, profile.monitoring.quality
    folder = folder or lake.partition_version(fleet, "telemetry", day)
    valid_file, quarantine_file = folder / DATA_FILE, folder / QUARANTINE_FILE
    for file in (valid_file, quarantine_file):
        if not file.is_file():
            raise QualityError(f"{fleet}: no partition {file} for {day}; materialize {fleet}/telemetry for that day first")
    valid, quarantine = f"{parquet(valid_file)}", f"{parquet(quarantine_file)}"
    devices, std, constant = _device_stats(con, valid, profile)
    history = device_history(con, lake, profile, day, carried)
    if carried is not None:
        carried[folder] = DayFigures(frozenset(devices["device_id"]), constant)
    flags = _flag_rows(con, valid, profile, std)
    n_valid = int(devices["rows"].sum())
    by_reason = dict(con.execute(f"SELECT reason, count(*) FROM {quarantine} GROUP BY ALL ORDER BY 2 DESC, 1").fetchall())
    quarantined = sum(by_reason.values())
    rows_read = n_valid + quarantined
    return [
        _stuck(con, flags, devices, profile, history),
        _dropouts(con, lake, quarantine, devices, profile, history, day),
        _out_of_range(con, quarantine, by_reason, rows_read, profile),
        _spikes(con, flags, std, profile, n_valid),
        _result("quarantine_share", quarantined / rows_read if rows_read else 0.0, spec.quarantine_share,
                {"rows_read": rows_read, "rows_quarantined": quarantined, "by_reason": by_reason}),
    ]


def _device_stats(con: duckdb.DuckDBPyConnection, valid: str, profile: FleetProfile) -> tuple[pd.DataFrame, dict, frozenset]:
    """Pass 1: rows and sampling slots per device, {sensor: (mean, std)} of its steps over the fleet, and the
    (device, sensor) pairs constant all day (what the next day's check needs of this one).

    One window pass grouped per device and for the whole fleet (GROUPING SETS): exact statistics.
    """
    interval = int(profile.sampling_interval.total_seconds() * _US)
    names = profile.sensor_names
    steps = ", ".join(f"{ident(s)} AS v{i}, {ident(s)} - lag({ident(s)}) OVER w AS d{i}" for i, s in enumerate(names))
    stats = ", ".join(f"avg(d{i}), stddev_pop(d{i})" for i in range(len(names)))
    constant = ", ".join(f"coalesce(count(v{i}) > 0 AND min(v{i}) = max(v{i}), false) AS k{i}" for i in range(len(names)))
    frame = con.execute(
        f"""SELECT device_id, count(*) AS rows,
                   count(*) - count(*) FILTER (WHERE epoch_us(ts) // {interval} = epoch_us(prev_ts) // {interval}) AS slots,
                   min(ts) AS first_ts, {stats}, {constant}
            FROM (SELECT device_id, ts, lag(ts) OVER w AS prev_ts, {steps} FROM {valid} {WINDOW})
            GROUP BY GROUPING SETS ((device_id), ())"""
    ).df()
    fleet_row = frame[frame["device_id"].isna()]
    per_device = frame[frame["device_id"].notna()].reset_index(drop=True)
    constant = frozenset((d, s) for i, s in enumerate(names) for d in per_device.loc[per_device[f"k{i}"].astype(bool), "device_id"])
    values = fleet_row.iloc[0, 4:4 + 2 * len(names)].tolist() if len(fleet_row) else [None] * 2 * len(names)
    return per_device.iloc[:, :4], {s: (_num(values[2 * i]), _num(values[2 * i + 1])) for i, s in enumerate(names)}, constant


def _num(value: object) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def _flag_rows(con: duckdb.DuckDBPyConnection, valid: str, profile: FleetProfile, std: dict) -> str:
    """Pass 2: the rows where some sensor spikes or repeats its previous value, into a temp table.

    A spike is an isolated excursion: the value leaves its predecessor and comes back at the next
    sample, both steps beyond spike_zscore std of the sensor's steps. A one-sided step (a draw
    starting, an element switching on) is a change of state, not a spike.
    """
    spec = profile.monitoring.quality
    columns, spikes, flats = ["device_id", "ts", "lag(ts) OVER w AS prev_ts"], [], []
    for i, sensor in enumerate(profile.sensors):
        s, own = ident(sensor.name), profile.monitoring.sensor(sensor.name)
        mean, sd = std[sensor.name]
        rest = f" AND {s} NOT IN ({sensor.min!r}, {sensor.max!r})" if spec.stuck_ignore_bounds else ""
        flat = "false" if own.ignores("stuck") else f"coalesce({s} = lag({s}) OVER w{rest}, false)"
        columns += [
            f"{s} - lag({s}) OVER w - ({mean!r}) AS d{i}",
            f"lead({s}) OVER w - {s} - ({mean!r}) AS e{i}",
            f"{flat} AS flat{i}",
        ]
        bound = (own.spike_zscore or spec.spike_zscore) * sd
        spiky = sd > 0 and not own.ignores("spikes")
        spike = f"coalesce(abs(d{i}) > {bound!r} AND abs(e{i}) > {bound!r} AND sign(d{i}) != sign(e{i}), false)" if spiky else "false"
        spikes.append(f"{spike} AS spike{i}")
        flats.append(f"flat{i}")
    n = len(profile.sensors)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE quality_flags AS
            SELECT * FROM (
                SELECT device_id, ts, prev_ts, {', '.join(spikes)}, {', '.join(flats)}
                FROM (SELECT {', '.join(columns)} FROM {valid} {WINDOW}))
            WHERE {' OR '.join(f'spike{i} OR flat{i}' for i in range(n))}"""
    )
    return "quality_flags"


def _stuck(con: duckdb.DuckDBPyConnection, flags: str, devices: pd.DataFrame, profile: FleetProfile,
           history: DeviceHistory) -> QualityResult:
    """(device, sensor) pairs whose longest run of one repeated value lasts at least stuck_window, unless the
    pair was constant all of the device's previous day (constant by design, or already reported)."""
    spec = profile.monitoring.quality
    watched = [s for s in profile.sensor_names if not profile.monitoring.sensor(s).ignores("stuck")]
    rates = repeat_rates(con, flags, devices, profile.sensor_names)
    samples = int(devices["rows"].sum())
    required = {s: required_run(rates[s], samples, profile.sampling_interval,
                                profile.monitoring.sensor(s).stuck_window or spec.stuck_window) for s in profile.sensor_names}
    # Constant on the median device today: by design, unless a device held it changing all of yesterday.
    by_design = sorted(s for s in watched if required[s] is None)
    windows = {s: required[s] or profile.monitoring.sensor(s).stuck_window or spec.stuck_window for s in profile.sensor_names}
    flat = " UNION ALL ".join(
        f"SELECT device_id, {sql_str(s)} AS sensor, {int(windows[s].total_seconds() * _US)} AS window_us, ts, prev_ts "
        f"FROM {flags} WHERE flat{i}" for i, s in enumerate(profile.sensor_names)
    )
    runs = con.execute(
        f"""SELECT device_id, sensor, min(prev_ts) AS since, max(ts) AS until,
                   (epoch_us(max(ts)) - epoch_us(min(prev_ts))) / 60e6 AS minutes
            FROM (SELECT *, sum(new::INT) OVER (PARTITION BY device_id, sensor ORDER BY ts) AS run
                  FROM (SELECT *, prev_ts IS DISTINCT FROM lag(ts) OVER (PARTITION BY device_id, sensor ORDER BY ts) AS new
                        FROM ({flat})))
            GROUP BY device_id, sensor, window_us, run
            HAVING epoch_us(max(ts)) - epoch_us(min(prev_ts)) >= window_us
            QUALIFY row_number() OVER (PARTITION BY device_id, sensor ORDER BY minutes DESC) = 1
            ORDER BY minutes DESC, device_id, sensor"""
    ).df()
    excused = pd.Series([(d, s) in history.constant_yesterday or (s in by_design and d not in history.reported_yesterday)
                         for d, s in zip(runs["device_id"], runs["sensor"])], index=runs.index, dtype=bool)
    runs = runs[~excused]
    pairs = len(devices) * len(watched)
    details = {
        "pairs": pairs,
        "stuck_pairs": len(runs),
        "constant_since_yesterday": int(excused.sum()),
        "window_minutes": spec.stuck_window.total_seconds() / 60,
        "not_watched": [s for s in profile.sensor_names if s not in watched],
        "constant_by_design": by_design,
        "lengthened_minutes": {s: windows[s].total_seconds() / 60 for s in watched
                               if required[s] and required[s] > (profile.monitoring.sensor(s).stuck_window or spec.stuck_window)},
        "by_sensor": {k: int(v) for k, v in runs["sensor"].value_counts().sort_index().items()},
        "worst": _records(runs.head(TOP)),
    }
    return _result("stuck_sensors", len(runs) / pairs if pairs else 0.0, spec.stuck_share, details)


def _dropouts(con: duckdb.DuckDBPyConnection, lake: Lake, quarantine: str, devices: pd.DataFrame, profile: FleetProfile,
              history: DeviceHistory, day: date) -> QualityResult:
    """Share of expected sampling slots without a valid row, over the devices that reported that day, counting
    only slots of each device's active life: from its first reading when it did not report yesterday, until
    its failure when it failed today.

    A fleet device whose rows were all quarantined reported nothing usable: all its slots are
    missing; so is a day no device reported (1.0). Fleet devices that sent nothing are listed as
    silent, not counted: the devices table does not say when a device was installed.
    """
    spec = profile.monitoring.quality
    interval = profile.sampling_interval
    full = max(1, int(timedelta(days=1) / interval))
    known_file = lake.table_file(profile.name, "devices")
    known = set()
    if known_file.is_file():
        known = {d for (d,) in con.execute(f"SELECT device_id FROM {parquet(known_file)}").fetchall()}
    path = sql_str("$." + json.dumps(profile.source.telemetry.device_column or profile.device_column))
    sent = {d for (d,) in con.execute(f"SELECT DISTINCT trim(json_extract_string(record, {path})) FROM {quarantine}").fetchall()}
    unusable = sorted((sent & known) - set(devices["device_id"]))
    slots = pd.concat([devices[["device_id", "slots", "first_ts"]], pd.DataFrame({"device_id": unusable, "slots": 0})],
                      ignore_index=True)
    expected, starting = history.expected_slots(slots, day, interval)
    missing = (expected - slots["slots"]).clip(lower=0)
    share = missing / expected
    ranked = slots.assign(missing=missing, missing_share=share).sort_values(["missing_share", "device_id"], ascending=[False, True])
    silent = sorted(known - set(slots["device_id"]))
    details = {
        "devices": len(slots),
        "expected_per_device": full,
        "expected_samples": int(expected.sum()),
        "devices_starting_today": starting,
        "devices_failed_today": sum(d in history.failed_at for d in slots["device_id"]),
        "missing_samples": int(missing.sum()),
        "devices_above_warn": int((share > spec.dropout_share.warn).sum()),
        "devices_above_error": int((share > spec.dropout_share.error).sum()),
        "devices_all_quarantined": len(unusable),
        "worst": _records(ranked[ranked["missing"] > 0][["device_id", "missing", "missing_share"]].head(TOP)),
        "silent_devices": len(silent),
        "silent_sample": silent[:TOP],
    }
    value = float(missing.sum() / expected.sum()) if len(slots) else 1.0
    return _result("dropouts", value, spec.dropout_share, details)


def _out_of_range(con: duckdb.DuckDBPyConnection, quarantine: str, by_reason: dict, rows_read: int, profile: FleetProfile) -> QualityResult:
    """Rows quarantined at ingestion because a sensor was outside its profile range, over rows read."""
    spec = profile.monitoring.quality
    by_sensor = {r.split(":", 1)[1]: n for r, n in by_reason.items() if r.startswith("out_of_range:")}
    count = sum(by_sensor.values())
    top = []
    if count:
        path = sql_str("$." + json.dumps(profile.source.telemetry.device_column or profile.device_column))
        top = con.execute(
            f"""SELECT trim(json_extract_string(record, {path})) AS device_id, count(*) AS rows FROM {quarantine}
                WHERE reason LIKE 'out_of_range:%' GROUP BY ALL ORDER BY rows DESC, device_id LIMIT {TOP}"""
        ).df()
        top = _records(top)
    details = {"rows_read": rows_read, "rows_out_of_range": count, "by_sensor": by_sensor, "top_devices": top}
    return _result("out_of_range_share", count / rows_read if rows_read else 0.0, spec.out_of_range_share, details)


def _spikes(con: duckdb.DuckDBPyConnection, flags: str, std: dict, profile: FleetProfile, n_valid: int) -> QualityResult:
    """Share of valid rows where at least one sensor spikes."""
    spec = profile.monitoring.quality
    names = profile.sensor_names
    any_spike = " OR ".join(f"spike{i}" for i in range(len(names)))
    per_sensor = ", ".join(f"count(*) FILTER (WHERE spike{i})" for i in range(len(names)))
    (rows, *counts) = con.execute(f"SELECT count(*) FILTER (WHERE {any_spike}), {per_sensor} FROM {flags}").fetchone()
    top = con.execute(
        f"""SELECT device_id, count(*) AS rows FROM {flags} WHERE {any_spike}
            GROUP BY ALL ORDER BY rows DESC, device_id LIMIT {TOP}"""
    ).df()
    details = {
        "rows": n_valid,
        "spike_rows": int(rows),
        "by_sensor": {s: int(c) for s, c in zip(names, counts) if c},
        "step_std": {s: std[s][1] for s in names},
        "top_devices": _records(top),
    }
    return _result("spike_rate", rows / n_valid if n_valid else 0.0, spec.spike_rate, details)


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows (timestamps as ISO text, numpy scalars as Python numbers)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))
