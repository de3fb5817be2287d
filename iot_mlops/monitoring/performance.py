"""Live model performance: predictions judged against the outcomes known once their horizon has passed ("matured").

A prediction made at ts is matured on day D when ts + horizon is no later than the end of D and the ingested
events cover its whole horizon; its outcome per component is the training label rule (a failure in
[ts, ts + horizon)), so live figures measure what the model was trained and gated on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from iot_mlops.lake import Lake, atomic_write, ident
from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.training.labels import events_coverage, events_start, label_column, labels_sql
from iot_mlops.training.metrics import event_metrics

TABLE = "model_performance"
OVERALL = "overall"
COLUMNS = ["model_name", "model_version", "scope", "current", "matured", "pending", "no_ground_truth", "positives", "alerts",
           "tp", "fp", "fn", "precision", "recall", "event_recall", "failures", "failures_caught", "first_ts", "last_ts"]


def end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time())


def judged_predictions(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, day: date) -> pd.DataFrame:
    """Predictions up to `day` with status (matured / pending / no_ground_truth) and, once matured, outcome per component."""
    fleet, comps = profile.name, profile.components
    days = [d for d in lake.partitions(fleet, "predictions") if d <= day]
    preds = lake.scan(fleet, "predictions", days)
    alerts = [f"p.{ident(f'alert_{c}')} AS {ident(f'alert_{c}')}" for c in comps]
    outcomes = [f"l.{ident(label_column(c))} AS {ident(label_column(c))}" for c in comps]
    if preds is None:
        return pd.DataFrame(columns=["device_id", "ts", "model_name", "model_version", "status",
                                     *[f"alert_{c}" for c in comps], *[label_column(c) for c in comps]])
    events, coverage, since = lake.scan(fleet, "events"), events_coverage(lake, fleet), events_start(lake, fleet)
    if events is None or coverage is None:  # nothing ingested yet: every prediction waits
        return con.execute(f"SELECT device_id, ts, model_name, model_version, 'pending' AS status, "
                           f"{', '.join(alerts)}, {', '.join(f'NULL::INTEGER AS {ident(label_column(c))}' for c in comps)} "
                           f"FROM {preds} p").df()
    cutoff = min(end_of(day), coverage)
    keys = f"(SELECT DISTINCT device_id, ts FROM {preds})"
    labels = labels_sql(profile, keys, events, cutoff, since)
    status = (f"CASE WHEN l.label_complete THEN 'matured' WHEN p.ts < TIMESTAMP '{since}' THEN 'no_ground_truth' "
              f"ELSE 'pending' END AS status")
    return con.execute(f"""
        SELECT p.device_id, p.ts, p.model_name, CAST(p.model_version AS VARCHAR) AS model_version, {status},
               {', '.join(alerts)}, {', '.join(outcomes)}
        FROM {preds} p JOIN ({labels}) l ON l.device_id = p.device_id AND l.ts = p.ts
        ORDER BY p.device_id, p.ts""").df()


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def _scores(truth: np.ndarray, alerts: np.ndarray) -> dict[str, float | int]:
    tp, fp, fn = int((truth & alerts).sum()), int((~truth & alerts).sum()), int((truth & ~alerts).sum())
    return {"positives": int(truth.sum()), "alerts": int(alerts.sum()), "tp": tp, "fp": fp, "fn": fn,
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn)}


def performance_table(judged: pd.DataFrame, failures: pd.DataFrame, profile: FleetProfile) -> pd.DataFrame:
    """One row per model version and scope (each component, and `overall` micro-averaged over components)."""
    comps, rows = profile.components, []
    if judged.empty:
        return pd.DataFrame(columns=COLUMNS)
    latest = judged.groupby(["model_name", "model_version"])["ts"].max()
    current = latest.idxmax()  # the version that scored the newest rows: the one serving now
    for (name, version), group in judged.groupby(["model_name", "model_version"], sort=False):
        matured = group[group["status"] == "matured"]
        counts = {"matured": len(matured), "pending": int((group["status"] == "pending").sum()),
                  "no_ground_truth": int((group["status"] == "no_ground_truth").sum())}
        truth = matured[[label_column(c) for c in comps]].fillna(0).to_numpy(dtype=int).astype(bool)
        alerts = matured[[f"alert_{c}" for c in comps]].to_numpy(dtype=int).astype(bool)
        events = _event_scores(matured, failures, profile)
        base = {"model_name": name, "model_version": version, "current": (name, version) == current, **counts,
                "first_ts": matured["ts"].min() if len(matured) else pd.NaT,
                "last_ts": matured["ts"].max() if len(matured) else pd.NaT}
        rows.append({**base, "scope": OVERALL, **_scores(truth.ravel(), alerts.ravel()), **events[OVERALL]})
        for i, comp in enumerate(comps):
            rows.append({**base, "scope": comp, **_scores(truth[:, i], alerts[:, i]), **events[comp]})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["model_name", "model_version", "scope"], ignore_index=True)


def _event_scores(matured: pd.DataFrame, failures: pd.DataFrame, profile: FleetProfile) -> dict[str, dict]:
    """Event-level recall (a failure counted once, caught by any alert for its component in the horizon before it)."""
    comps, empty = profile.components, {"event_recall": float("nan"), "failures": 0, "failures_caught": 0}
    if matured.empty:
        return {OVERALL: empty, **{c: empty for c in comps}}
    alerts = matured[["device_id", "ts"]].assign(**{c: matured[f"alert_{c}"].astype(int) for c in comps})
    out = {}
    for scope, subset in [(OVERALL, failures), *[(c, failures[failures["component"] == c]) for c in comps]]:
        m = event_metrics(subset, alerts, profile.target.horizon, profile.features.step)
        out[scope] = {"event_recall": m["event_recall"], "failures": m["failures"], "failures_caught": m["failures_caught"]}
    return out


def failure_events(con: duckdb.DuckDBPyConnection, lake: Lake, fleet: str, day: date) -> pd.DataFrame:
    """Failures (device_id, ts, component) known by the end of `day`."""
    events = lake.scan(fleet, "events")
    if events is None:
        return pd.DataFrame({"device_id": pd.Series(dtype=object), "ts": pd.Series(dtype="datetime64[us]"),
                             "component": pd.Series(dtype=object)})
    return con.execute(f"SELECT device_id, ts, value AS component FROM {events} WHERE kind = 'failure' "
                       f"AND ts < TIMESTAMP '{end_of(day)}'").df()


def compute_performance(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, day: date) -> pd.DataFrame:
    """Write `<fleet>/model_performance[day]` atomically and return it."""
    judged = judged_predictions(con, lake, profile, day)
    table = performance_table(judged, failure_events(con, lake, profile.name, day), profile)
    target = lake.partition_file(profile.name, TABLE, day)
    atomic_write(target, lambda tmp: table.to_parquet(tmp, index=False))
    return table


def headline(table: pd.DataFrame) -> dict:
    """The current version's overall figures (matured_positives: positive outcomes among its matured rows), per-component
    recall and precision, and the fleet's pending count."""
    current = table[table["current"].astype(bool)]
    if current.empty:  # no predictions yet
        return {"model_name": None, "model_version": None, "precision": math.nan, "recall": math.nan, "event_recall": math.nan,
                "matured": 0, "matured_positives": 0, "failures": 0, "pending": 0, "components": {}}
    overall = current[current["scope"] == OVERALL].iloc[0]
    parts = current[current["scope"] != OVERALL]
    return {
        "model_name": overall["model_name"], "model_version": overall["model_version"],
        "precision": float(overall["precision"]), "recall": float(overall["recall"]), "event_recall": float(overall["event_recall"]),
        "matured": int(overall["matured"]), "matured_positives": int(overall["positives"]), "failures": int(overall["failures"]),
        "pending": int(table.loc[table["scope"] == OVERALL, "pending"].sum()),
        "components": {r["scope"]: {"precision": float(r["precision"]), "recall": float(r["recall"]), "positives": int(r["positives"])}
                       for _, r in parts.iterrows()},
    }


def performance_history(lake: Lake, fleet: str) -> list[tuple[date, dict]]:
    """Headline figures of every written model_performance partition, oldest first (what the performance sensor reads)."""
    return [(day, headline(pd.read_parquet(lake.partition_file(fleet, TABLE, day)))) for day in lake.partitions(fleet, TABLE)]


@dataclass
class PerformanceRun:
    """The headline figures of a run's last day, after writing every day's table."""

    headline: dict
    lake_path: Path

    @property
    def metadata(self) -> dict[str, object]:
        """Overall and per-component figures of the current version, and the lake path, as plain values."""
        head = self.headline
        return {
            "recall": _number(head["recall"]),
            "precision": _number(head["precision"]),
            "event_recall": _number(head["event_recall"]),
            "pending": head["pending"],
            "matured": head["matured"],
            "matured_positives": head["matured_positives"],
            "model_version": str(head["model_version"] or "none"),
            "components": {c: {k: (v if math.isfinite(v) else None) for k, v in m.items()} for c, m in head["components"].items()},
            "lake_path": self.lake_path,
        }


def performance_days(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> PerformanceRun:
    """Write each day's model_performance table; the run's headline is its last day's."""
    heads = [headline(compute_performance(con, lake, profile, day)) for day in days]
    return PerformanceRun(heads[-1], lake.table_dir(profile.name, TABLE))


def _number(value: float | None) -> float:
    return float(value) if value is not None else math.nan
