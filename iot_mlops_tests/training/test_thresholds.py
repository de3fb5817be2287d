"""Thresholds within a false-alarm budget: hand-built scores whose best cut follows from the construction."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from iot_mlops.training.metrics import event_metrics
from iot_mlops.training.model import AlarmBudget, budget_threshold, budget_thresholds

T0 = datetime(2025, 3, 1)
HOURS = 720  # one device-month per device at one row an hour
STEP = pd.Timedelta(hours=1)
HORIZON = 24


def fleet(devices: int, seed: int = 0) -> pd.DataFrame:
    """Hourly rows of healthy devices with low scores."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"device_id": np.repeat([f"d{i}" for i in range(devices)], HOURS),
                          "ts": np.tile(pd.date_range(T0, periods=HOURS, freq="h"), devices)})
    return frame.assign(truth=False, prob=rng.uniform(0.0, 0.3, len(frame)))


def fail(frame: pd.DataFrame, device: str, hour: int, peak: float) -> pd.DataFrame:
    """A failure at `hour`: the horizon before it is positive, scores rise to `peak` in its last 6 hours."""
    rows = (frame.device_id == device) & frame.ts.between(T0 + timedelta(hours=hour - HORIZON), T0 + timedelta(hours=hour - 1))
    frame.loc[rows, "truth"] = True
    frame.loc[rows & (frame.ts >= T0 + timedelta(hours=hour - 6)), "prob"] = peak
    return frame


def alarm(frame: pd.DataFrame, device: str, hour: int, score: float) -> pd.DataFrame:
    """An isolated high score on a healthy stretch: a false alarm at any cut up to `score`."""
    frame.loc[(frame.device_id == device) & (frame.ts == T0 + timedelta(hours=hour)), "prob"] = score
    return frame


def cut_of(frame: pd.DataFrame, per_device_month: float) -> tuple[float, dict]:
    frame = frame.sort_values(["device_id", "ts"])
    return budget_threshold(frame.device_id.to_numpy(), frame.ts.to_numpy(), frame.truth.to_numpy(), frame.prob.to_numpy(),
                            AlarmBudget(per_device_month, STEP))


def test_the_cut_catches_what_the_budget_allows_and_no_more_alarms():
    # Four device-months. Failure A peaks at 0.9, failure B at 0.6; healthy spikes at 0.95 (one), 0.7 (three), 0.5 (many).
    frame = fleet(4)
    frame = fail(fail(frame, "d0", 200, 0.9), "d1", 400, 0.6)
    frame = alarm(frame, "d2", 100, 0.95)
    for hour in (150, 300, 450):
        frame = alarm(frame, "d3", hour, 0.7)
    for hour in range(20, 700, 40):
        frame = alarm(frame, "d2", hour + 5, 0.5)
    # 1/device-month = 4 false alarms: A costs the 0.95 spike (1), B also the three at 0.7 (4): both fit.
    cut, figures = cut_of(frame, 1.0)
    assert 0.5 < cut <= 0.6
    assert figures == {"failures": 2, "caught": 2, "false_alarms_per_device_month": pytest.approx(4 / 4),
                       "event_recall": 1.0}
    # 0.5/device-month = 2 false alarms: B no longer fits, A does, at a cut above the three 0.7 spikes.
    cut, figures = cut_of(frame, 0.5)
    assert 0.7 < cut <= 0.9
    assert figures["caught"] == 1 and figures["false_alarms_per_device_month"] == pytest.approx(1 / 4)
    # 0.2/device-month < 1 false alarm: nothing fits, the cut stays above every score seen.
    cut, figures = cut_of(frame, 0.2)
    assert cut > frame.prob.max()
    assert figures["caught"] == 0 and figures["event_recall"] == 0.0


def test_among_cuts_catching_as_much_the_lowest_without_more_alarms_wins():
    # Failure peaks at 0.9; the highest healthy score is 0.3: any cut in (0.3, 0.9] catches it without a false alarm.
    frame = fail(fleet(2), "d0", 300, 0.9)
    cut, figures = cut_of(frame, 1.0)
    assert frame.prob[frame.prob < 0.9].max() < cut < 0.35  # the earliest alerts at no cost
    assert figures["false_alarms_per_device_month"] == 0.0 and figures["caught"] == 1


@pytest.mark.parametrize("seed", range(5))
def test_on_random_scores_the_chosen_cut_keeps_the_event_scorer_within_budget(seed):
    rng = np.random.default_rng(seed)
    frame = fleet(6, seed)
    frame["prob"] = rng.beta(0.5, 8, len(frame))
    for device in rng.choice(6, 4, replace=False):
        frame = fail(frame, f"d{device}", int(rng.integers(100, 700)), float(rng.uniform(0.2, 1.0)))
    budget = 1.0
    ids = frame[["device_id", "ts"]]
    thresholds, figures = budget_thresholds(frame[["truth"]].rename(columns={"truth": "c"}), frame[["prob"]].rename(columns={"prob": "c"}),
                                            ids, AlarmBudget(budget, STEP))
    cut = thresholds["c"]
    predictions = ids.assign(c=(frame.prob >= cut).astype(int))
    failures = frame[frame.truth].groupby("device_id").ts.max().add(STEP).rename("ts").reset_index().assign(component="c")
    scored = event_metrics(failures, predictions, timedelta(hours=HORIZON), STEP)
    # the scorer counts device-months from the first to the last row: one step short of the rows' span per device
    assert scored["false_alarms_per_device_month"] <= budget * HOURS / (HOURS - 1) + 1e-9
    assert scored["failures_caught"] == figures["c"]["caught"]
