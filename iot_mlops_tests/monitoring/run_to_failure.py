"""A deterministic run-to-failure fleet landed as table files, and the profile that reads it (no fleet code).

Engines in a few test-cell slots run hourly from their first cycle to failure; when one fails, the next starts in
its slot a few hours later, so units start and end mid-day. Like public turbofan run-to-failure sets: several
channels are constant by design, one reports whole units, the others drift with wear under strongly
autocorrelated noise; about a hundred hourly rows a day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

NAME = "engines"
START = date(2024, 3, 1)
SLOTS = 5
CONSTANT = {"t2": 518.67, "p2": 14.62, "epr": 1.3, "far_b": 0.03, "nf_dmd": 2388.0, "pcnfr_dmd": 100.0}
# name: (healthy level, spread between units, wear at failure (signed), noise std, decimals)
WEARING = {
    "t24": (642.0, 0.3, 1.6, 0.35, 2), "t30": (1585.0, 3.0, 14.0, 4.0, 2), "t50": (1400.0, 5.0, 25.0, 6.0, 2),
    "p30": (554.0, 0.5, -3.0, 0.6, 2), "nf": (2388.05, 0.03, 0.25, 0.05, 2), "nc": (9050.0, 8.0, 40.0, 12.0, 2),
    "ps30": (47.3, 0.1, 0.9, 0.2, 2), "phi": (521.9, 0.4, -2.5, 0.5, 2), "bpr": (8.41, 0.01, 0.1, 0.02, 4),
    "w31": (38.9, 0.1, -0.7, 0.15, 2), "w32": (23.35, 0.06, -0.4, 0.09, 4),
}
SETTINGS = {"setting1": 0.002, "setting2": 0.0003}  # operating settings: white noise about zero


def lives(days: int, seed: int) -> pd.DataFrame:
    """Unit, slot, first and last cycle (hours since START) of every unit that starts within `days`."""
    rng = np.random.default_rng(seed)
    units, horizon = [], days * 24
    for slot in range(SLOTS):
        begin = int(rng.integers(0, 30))
        while begin < horizon:
            life = int(rng.integers(130, 340))
            units.append((slot, begin, begin + life - 1))
            begin += life + int(rng.integers(1, 8))  # the slot's next engine after a short changeover
    frame = pd.DataFrame(units, columns=["slot", "first", "last"]).sort_values(["first", "slot"], ignore_index=True)
    frame.insert(0, "unit", [f"u{i:03d}" for i in range(len(frame))])
    return frame


def telemetry(units: pd.DataFrame, days: int, seed: int) -> pd.DataFrame:
    """Hourly readings of every unit from its first cycle to its failure (or the end of the data)."""
    rng = np.random.default_rng(seed + 1)
    epoch, horizon, parts = datetime.combine(START, datetime.min.time()), days * 24, []
    for unit in units.itertuples():
        hours = np.arange(unit.first, min(unit.last, horizon - 1) + 1)
        wear = np.expm1(3.0 * (hours - unit.first) / (unit.last - unit.first)) / np.expm1(3.0)  # 0 new, 1 at failure
        rows = {"unit": unit.unit, "time": [epoch + timedelta(hours=int(h)) for h in hours]}
        rows.update({s: rng.normal(0, sd, len(hours)) for s, sd in SETTINGS.items()})
        rows.update(CONSTANT)
        for name, (level, spread, worn, noise, decimals) in WEARING.items():
            ar = np.zeros(len(hours))
            shocks = rng.normal(0, noise * np.sqrt(1 - 0.9**2), len(hours))
            for i in range(len(hours)):  # AR(1): an hour is 0.9 of the previous one plus a shock
                ar[i] = (0.9 * ar[i - 1] if i else rng.normal(0, noise)) + shocks[i]
            rows[name] = np.round(level + rng.normal(0, spread) + worn * wear + ar, decimals)
        rows["ht_bleed"] = np.round(392 + rng.normal(0, 0.5) + 5 * wear + rng.normal(0, 1.2, len(hours)))
        parts.append(pd.DataFrame(rows))
    return pd.concat(parts, ignore_index=True).sort_values(["time", "unit"], ignore_index=True)


def land(folder: Path, days: int, seed: int = 3) -> pd.DataFrame:
    """Write telemetry, units, failures and maintenance as Parquet under `folder`; the units' lives."""
    folder.mkdir(parents=True, exist_ok=True)
    units = lives(days, seed)
    telemetry(units, days, seed).to_parquet(folder / "telemetry.parquet", index=False)
    epoch = datetime.combine(START, datetime.min.time())
    pd.DataFrame({"unit": units["unit"], "build": [f"b{s % 2}" for s in units["slot"]]}).to_parquet(folder / "units.parquet", index=False)
    failed = units[units["last"] < days * 24]
    pd.DataFrame({"unit": failed["unit"], "time": [epoch + timedelta(hours=int(h)) for h in failed["last"]],
                  "component": "engine"}).to_parquet(folder / "failures.parquet", index=False)
    pd.DataFrame({"unit": pd.Series(dtype=str), "time": pd.Series(dtype="datetime64[us]"),
                  "component": pd.Series(dtype=str)}).to_parquet(folder / "maintenance.parquet", index=False)
    return units


def profile(folder: Path, days: int) -> dict:
    """The fleet's profile: sensor ranges, hourly features of 6 h and 24 h, failure within 24 h."""
    sensors = [{"name": s, "unit": "-", "min": -1, "max": 1} for s in SETTINGS]
    sensors += [{"name": s, "unit": "-", "min": 0, "max": 2 * v} for s, v in CONSTANT.items()]
    sensors += [{"name": s, "unit": "-", "min": 0, "max": 2 * level} for s, (level, *_) in WEARING.items()]
    sensors.append({"name": "ht_bleed", "unit": "-", "min": 300, "max": 500, "resolution": 1})
    return {
        "name": NAME, "description": "Test-cell engines run to failure, hourly cycles.", "device_type": "engine",
        "device_column": "unit", "timestamp_column": "time", "sampling_interval": "1h", "sensors": sensors,
        "components": ["engine"],
        "source": {"kind": "tables", "path": str(folder), "telemetry": {"path": "telemetry.parquet"},
                   "devices": {"path": "units.parquet", "attributes": [{"name": "build", "kind": "categorical"}]},
                   "events": [{"kind": "failure", "path": "failures.parquet", "value_column": "component"},
                              {"kind": "maintenance", "path": "maintenance.parquet", "value_column": "component"}]},
        "partitions": {"start": START.isoformat(), "end": (START + timedelta(days=days - 1)).isoformat()},
        "features": {"step": "1h", "windows": ["6h", "24h"], "aggregations": ["mean", "std"], "error_window": "24h",
                     "max_age": "2h"},
        "target": {"horizon": "24h"},
        "monitoring": {"drift": {"ignore": ["hours_since_*"]}},
    }


def write_profile(target: Path, folder: Path, days: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(profile(folder, days), sort_keys=False))
    return target
