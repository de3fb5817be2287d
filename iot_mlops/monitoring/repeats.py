"""How long one repeated value must last to be a stuck sensor, from how often the sensor repeats on the day.

A slow sensor read at a coarse resolution, or sampled hourly, repeats its last value often on a healthy device:
a fixed window of a few samples then flags half the fleet. Each sensor's run must also be longer than chance
makes likely given how often it repeats on the day's devices. A sensor constant on the median device is constant
by design that day (a setpoint, an unused channel), not stuck, unless the device held it changing all of yesterday.
"""

from __future__ import annotations

import math
from datetime import timedelta

import duckdb
import pandas as pd

CHANCE = 0.01  # expected runs this long by chance, per sensor and day, on healthy devices


def repeat_rates(con: duckdb.DuckDBPyConnection, flags: str, devices: pd.DataFrame, sensors: list[str]) -> dict[str, float]:
    """Sensor -> how often its steps repeat the previous value on the day's devices (1.0: constant by design)."""
    counts = ", ".join(f"count(*) FILTER (WHERE flat{i}) AS r{i}" for i in range(len(sensors)))
    flat = con.execute(f"SELECT device_id, {counts} FROM {flags} GROUP BY device_id").df().set_index("device_id")
    steps = (devices.set_index("device_id")["rows"] - 1).clip(lower=0)
    steps = steps[steps > 0]
    if steps.empty:
        return dict.fromkeys(sensors, 0.0)
    flat = flat.reindex(steps.index).fillna(0)
    rates = {}
    for i, sensor in enumerate(sensors):
        share = flat[f"r{i}"] / steps
        # Constant on the median device: by design. Else the mean over devices not constant all day, so that an
        # occasional repeat counts and a device stuck all day does not make its own run look likely.
        rates[sensor] = 1.0 if share.median() >= 1.0 else float(share[share < 1.0].mean())
    return rates


def required_run(rate: float, samples: int, interval: timedelta, window: timedelta) -> timedelta | None:
    """The shortest run that counts as stuck: the window, or longer where `rate` makes long runs likely among
    `samples` readings; None where the sensor repeats at every step (constant by design)."""
    if rate >= 1.0:
        return None
    if rate <= 0.0 or samples <= 0:
        return window
    steps = math.ceil(math.log(CHANCE / samples) / math.log(rate))
    return max(window, steps * interval)
