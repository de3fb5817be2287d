"""Maintenance metrics on hand-built failures and alerts; every expectation follows from the construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import fbeta_score

from iot_mlops.training.metrics import component_metrics, event_metrics, macro_f1, per_component_markdown
from iot_mlops.training.model import macro_fbeta

T0 = datetime(2025, 3, 1)
STEP = timedelta(hours=1)
HORIZON = timedelta(hours=6)
HOURS = 48
COMPONENTS = ["c1", "c2"]


def at(hour: float) -> datetime:
    return T0 + timedelta(hours=hour)


@dataclass
class Device:
    """One device's alerts (component -> alert hours) and failures (component, hour)."""

    name: str
    alerts: dict[str, list[int]] = field(default_factory=dict)
    failures: list[tuple[str, float]] = field(default_factory=list)


# Each device states what the scorer must conclude about it.
DEVICES = [
    # c1 fails at 20:00. Alerts at 15, 16 and 18 all fall in (14, 20]: one catch, lead 20 - 15 = 5 h.
    # The alert at 13 is 7 h ahead, outside the horizon, and alone in its run: one false alarm.
    # The c2 alert at 19 is the wrong component: it catches nothing and is a c2 false alarm.
    Device("a", alerts={"c1": [13, 15, 16, 18], "c2": [19]}, failures=[("c1", 20)]),
    # c2 fails at 30:00 with no alert: missed.
    Device("b", failures=[("c2", 30)]),
    # Two runs of c2 alerts with no failure anywhere near: two false alarms (one per run, not per alert).
    Device("c", alerts={"c2": [5, 6, 7, 40, 41]}),
    # c1 fails at 03:00, before the horizon after the first scored hour: out of scope, and the alert at 01
    # that preceded it is no false alarm.
    Device("d", alerts={"c1": [1]}, failures=[("c1", 3)]),
    # A run that starts before the failure at 32 and goes on after it: caught with lead 2 h, and the run
    # is no false alarm although its last alert comes after the failure.
    Device("e", alerts={"c1": [30, 31, 32, 33, 34]}, failures=[("c1", 32)]),
]
IN_SCOPE = [("a", 20), ("b", 30), ("e", 32)]
LEADS = {"a": 5.0, "e": 2.0}  # first alert in the horizon before each caught failure
FALSE_ALARM_RUNS = 1 + 1 + 2  # a: [13] and c2 [19]; c: [5-7] and [40-41]


def frames(devices: list[Device]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for device in devices:
        for hour in range(HOURS):
            rows.append({"device_id": device.name, "ts": at(hour),
                         **{c: int(hour in device.alerts.get(c, [])) for c in COMPONENTS}})
    failures = pd.DataFrame({
        "device_id": pd.Series([d.name for d in devices for _ in d.failures], dtype=object),
        "ts": pd.Series([at(h) for d in devices for _, h in d.failures], dtype="datetime64[us]"),
        "component": pd.Series([c for d in devices for c, _ in d.failures], dtype=object),
    })
    return failures, pd.DataFrame(rows)


def test_event_metrics_count_each_failure_once_from_its_first_alert():
    failures, predictions = frames(DEVICES)
    metrics = event_metrics(failures, predictions, HORIZON, STEP)

    assert metrics["failures"] == len(IN_SCOPE)
    assert metrics["failures_caught"] == len(LEADS)
    assert metrics["event_recall"] == pytest.approx(len(LEADS) / len(IN_SCOPE))
    assert metrics["mean_lead_time_h"] == pytest.approx(sum(LEADS.values()) / len(LEADS))
    device_months = len(DEVICES) * (HOURS - 1) / (30 * 24)
    assert metrics["false_alarms_per_device_month"] == pytest.approx(FALSE_ALARM_RUNS / device_months)


def test_event_metrics_do_not_depend_on_row_order():
    failures, predictions = frames(DEVICES)
    shuffled = predictions.sample(frac=1.0, random_state=3)
    assert event_metrics(failures, shuffled, HORIZON, STEP) == event_metrics(failures, predictions, HORIZON, STEP)


def test_min_lead_drops_alerts_that_come_too_late():
    # The only alert comes 1 h before the failure: caught without a minimum lead, missed with 2 h.
    late = [Device("f", alerts={"c1": [24]}, failures=[("c1", 25)])]
    failures, predictions = frames(late)
    assert event_metrics(failures, predictions, HORIZON, STEP)["failures_caught"] == 1
    strict = event_metrics(failures, predictions, HORIZON, STEP, min_lead=timedelta(hours=2))
    assert (strict["failures"], strict["failures_caught"], strict["event_recall"]) == (1, 0, 0.0)
    assert math.isnan(strict["mean_lead_time_h"])


def test_no_alerts_and_no_failures():
    failures, predictions = frames([Device("g")])
    metrics = event_metrics(failures, predictions, HORIZON, STEP)
    assert metrics["failures"] == 0 and math.isnan(metrics["event_recall"])
    assert metrics["false_alarms_per_device_month"] == 0


def test_component_metrics_from_a_known_confusion():
    # c1: 2 true positives, 1 false positive, 1 false negative, 4 true negatives. c2: never fails, never predicted.
    truth = pd.DataFrame({"c1": [1, 1, 1, 0, 0, 0, 0, 0], "c2": [0] * 8})
    pred = pd.DataFrame({"c1": [1, 1, 0, 1, 0, 0, 0, 0], "c2": [0] * 8})
    prob = pd.DataFrame({"c1": [0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.1, 0.0], "c2": [0.1] * 8})
    metrics = component_metrics(truth, pred, prob)
    assert metrics["c1"]["precision"] == pytest.approx(2 / 3) and metrics["c1"]["recall"] == pytest.approx(2 / 3)
    assert metrics["c1"]["f1"] == pytest.approx(2 / 3) and metrics["c1"]["support"] == 3
    # Of the 3 x 5 positive-negative pairs, only (0.3, 0.7) is ranked the wrong way round.
    assert metrics["c1"]["roc_auc"] == pytest.approx(14 / 15)
    assert metrics["c2"]["f1"] == 0.0 and math.isnan(metrics["c2"]["pr_auc"])
    # c2 never fails in these rows: its F1 is undefined and left out of the macro average.
    assert macro_f1(metrics) == pytest.approx(2 / 3)
    assert macro_f1({"c2": metrics["c2"]}) == 0.0


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_macro_fbeta_equals_sklearn_including_undefined_columns(beta: float):
    rng = np.random.default_rng(int(beta * 10))
    truth = rng.integers(0, 2, size=(200, 5))
    pred = rng.integers(0, 2, size=(200, 5))
    truth[:, 3] = 0  # never fails: recall undefined
    pred[:, 3] = 0  # and never predicted: precision undefined too
    pred[:, 4] = 0  # fails but never predicted
    expected = np.mean([fbeta_score(truth[:, i], pred[:, i], beta=beta, zero_division=0) for i in range(5)])
    assert macro_fbeta(truth, pred, beta) == pytest.approx(expected)


def test_per_component_table_says_no_failures_instead_of_nan():
    truth = pd.DataFrame({"tank": [0, 1, 1, 0], "seal": [0, 0, 0, 0]})
    prob = pd.DataFrame({"tank": [0.1, 0.9, 0.4, 0.2], "seal": [0.1, 0.2, 0.3, 0.1]})
    table = per_component_markdown(component_metrics(truth, (prob > 0.5).astype(int), prob))
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "nan" not in table.lower()
    assert "no failures in test" in rows["seal"]
    assert rows["tank"].split("|")[2:7] == [" 1.000 ", " 0.500 ", " 0.667 ", " 1.000 ", " 2 "]


def test_an_alert_going_on_through_an_outage_is_no_false_alarm():
    """Rows of a failed device are not in the data: the alert before the failure and after the repair is one run."""
    failures = pd.DataFrame({"device_id": ["a", "b"], "ts": [at(20), at(40)], "component": ["c1", "c1"]})
    hours = [h for h in range(48) if h != 21]  # 21:00 saw the failed device, left out
    alerts = {*range(16, 21), 22, 23}
    predictions = pd.DataFrame({
        "device_id": ["a"] * len(hours) + ["b"] * len(hours), "ts": [at(h) for h in hours] * 2,
        "c1": [int(h in alerts) for h in hours] * 2,  # b fails at 40:00, after both runs: its 22..23 run is a false alarm
    })
    metrics = event_metrics(failures, predictions, HORIZON, STEP)
    device_months = 2 * ((at(47) - at(0)) / pd.Timedelta(days=30))
    assert metrics["false_alarms_per_device_month"] == pytest.approx(2 / device_months)  # b's two runs; none of a's
