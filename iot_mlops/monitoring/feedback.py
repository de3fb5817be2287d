"""Feedback summary: what users say about the alerts, by device model, component and device, and which features
set false positives apart from correct alerts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from iot_mlops.lake import Lake, atomic_write
from iot_mlops.opstore.predictions import NO_ALERT
from iot_mlops.opstore.schema import FEEDBACK_TYPES
from iot_mlops.profiles.schema import FleetProfile

TABLE = "feedback_summary"
TOP_FEATURES = 5
REPEATED = 2  # false positives on one device that make it "repeated"
COLUMNS = ["view", "breakdown", "key", "feedback", "false_positives", "correct", "false_positive_rate", "mean_rating",
           "smd", "fp_mean", "correct_mean"]


@dataclass
class FeedbackSummary:
    """Figures of one view (the day's feedback, or everything received up to the end of the day)."""

    feedback: int = 0
    by_type: dict[str, int] = field(default_factory=lambda: {t: 0 for t in FEEDBACK_TYPES})
    mean_rating: float = math.nan
    false_positives: int = 0
    correct_alerts: int = 0
    false_positive_rate: float = math.nan  # false_positive / (false_positive + correct), alert predictions only
    by_device_model: dict[str, dict] = field(default_factory=dict)
    by_component: dict[str, dict] = field(default_factory=dict)
    repeated_fp_devices: dict[str, int] = field(default_factory=dict)
    fp_features: list[dict] = field(default_factory=list)  # top features by |standardized mean difference|


def device_model_attribute(profile: FleetProfile) -> str | None:
    """The categorical device attribute that names the model (`model` if present, else the first categorical one)."""
    names = [a.name for a in profile.source.devices.attributes if a.kind == "categorical"]
    return "model" if "model" in names else (names[0] if names else None)


def _rates(frame: pd.DataFrame, by: str) -> dict[str, dict]:
    out = {}
    for key, group in frame.groupby(by, dropna=False):
        fp, ok = int((group["type"] == "false_positive").sum()), int((group["type"] == "correct").sum())
        out[str(key)] = {"false_positives": fp, "correct": ok, "false_positive_rate": fp / (fp + ok) if fp + ok else math.nan}
    return out


def standardized_differences(fp: pd.DataFrame, ok: pd.DataFrame, top: int = TOP_FEATURES) -> list[dict]:
    """Numeric features ranked by |mean(fp) - mean(correct)| / pooled std; needs two rows on each side."""
    if len(fp) < 2 or len(ok) < 2:
        return []
    out = []
    for col in fp.select_dtypes(include="number").columns:
        if col not in ok:
            continue
        a, b = fp[col].astype(float).dropna(), ok[col].astype(float).dropna()
        if len(a) < 2 or len(b) < 2:
            continue
        pooled = math.sqrt((a.var() + b.var()) / 2)
        if not pooled > 0:
            continue
        out.append({"feature": col, "smd": float((a.mean() - b.mean()) / pooled), "fp_mean": float(a.mean()),
                    "correct_mean": float(b.mean())})
    return sorted(out, key=lambda r: -abs(r["smd"]))[:top]


def summarize(fb: pd.DataFrame, features: pd.DataFrame | None = None, top: int = TOP_FEATURES) -> FeedbackSummary:
    """Summary of feedback rows (type, rating, device_id, ts, predicted_component, device_model) and, for the feature
    pattern, the feature rows (device_id, ts, ...) of the predictions they refer to."""
    s = FeedbackSummary()
    if fb.empty:
        return s
    s.feedback = len(fb)
    s.by_type.update({str(k): int(v) for k, v in fb["type"].value_counts().items()})
    s.mean_rating = float(fb["rating"].mean())
    alerts = fb[(fb["predicted_component"] != NO_ALERT) & fb["type"].isin(["false_positive", "correct"])]
    s.false_positives, s.correct_alerts = int((alerts["type"] == "false_positive").sum()), int((alerts["type"] == "correct").sum())
    if len(alerts):
        s.false_positive_rate = s.false_positives / len(alerts)
        s.by_component = _rates(alerts, "predicted_component")
        if "device_model" in alerts:
            s.by_device_model = _rates(alerts.assign(device_model=alerts["device_model"].fillna("unknown")), "device_model")
    repeated = alerts.loc[alerts["type"] == "false_positive", "device_id"].value_counts()
    s.repeated_fp_devices = {str(d): int(n) for d, n in repeated[repeated >= REPEATED].items()}
    if features is not None and len(alerts):
        keys = {"device_id": str, "ts": "datetime64[ns]"}  # the store and the lake may differ in id type and time unit
        rows = alerts[["device_id", "ts", "type"]].astype(keys).merge(features.astype(keys), on=["device_id", "ts"], how="inner")
        values = rows.drop(columns=["device_id", "ts"])
        s.fp_features = standardized_differences(values[values["type"] == "false_positive"].drop(columns="type"),
                                                 values[values["type"] == "correct"].drop(columns="type"), top)
    return s


def summary_frame(views: dict[str, FeedbackSummary]) -> pd.DataFrame:
    """Long-format rows of several views (`day`, `cumulative`), one breakdown per kind of figure."""
    rows = []
    for view, s in views.items():
        rows.append({"view": view, "breakdown": "overall", "key": "all", "feedback": s.feedback, "false_positives": s.false_positives,
                     "correct": s.correct_alerts, "false_positive_rate": s.false_positive_rate, "mean_rating": s.mean_rating})
        rows += [{"view": view, "breakdown": "type", "key": t, "feedback": n} for t, n in s.by_type.items()]
        for breakdown, rates in (("device_model", s.by_device_model), ("component", s.by_component)):
            rows += [{"view": view, "breakdown": breakdown, "key": k, "feedback": r["false_positives"] + r["correct"], **r}
                     for k, r in rates.items()]
        rows += [{"view": view, "breakdown": "repeated_fp_device", "key": d, "false_positives": n}
                 for d, n in s.repeated_fp_devices.items()]
        rows += [{"view": view, "breakdown": "fp_feature", "key": f["feature"], **{k: f[k] for k in ("smd", "fp_mean", "correct_mean")}}
                 for f in s.fp_features]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("feedback", "false_positives", "correct"):
        frame[col] = frame[col].astype("Int64")
    return frame


def feature_rows(con: duckdb.DuckDBPyConnection, lake: Lake, fleet: str, keys: pd.DataFrame) -> pd.DataFrame:
    """Feature rows of the given (device_id, ts), read only from the features partitions of their days."""
    if keys.empty:
        return pd.DataFrame(columns=["device_id", "ts"])
    days = sorted({pd.Timestamp(t).date() for t in keys["ts"]})
    source = lake.scan(fleet, "features", days)
    if source is None:
        return pd.DataFrame(columns=["device_id", "ts"])
    wanted = keys[["device_id", "ts"]].drop_duplicates().astype({"device_id": str})
    con.register("wanted_keys", wanted)
    try:
        return con.execute(f"SELECT f.* FROM {source} f SEMI JOIN wanted_keys k ON f.device_id = k.device_id AND f.ts = k.ts").df()
    finally:
        con.unregister("wanted_keys")


def device_models(lake: Lake, profile: FleetProfile) -> pd.DataFrame | None:
    """device_id -> device_model from the devices table, or None without a model attribute or devices table."""
    attribute, file = device_model_attribute(profile), lake.table_file(profile.name, "devices")
    if attribute is None or not file.is_file():
        return None
    frame = pd.read_parquet(file, columns=["device_id", attribute])
    return frame.rename(columns={attribute: "device_model"}).astype({"device_id": str, "device_model": str})


def compute_feedback_summary(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, fb: pd.DataFrame,
                             day: date) -> dict[str, FeedbackSummary]:
    """Summaries of the feedback received on `day` and up to its end; writes `<fleet>/feedback_summary[day]` atomically."""
    start = datetime.combine(day, time())
    end = start + timedelta(days=1)
    upto = fb[fb["created_at"] < end].copy() if len(fb) else fb
    models = device_models(lake, profile)
    if models is not None and len(upto):
        upto = upto.astype({"device_id": str}).merge(models, on="device_id", how="left")
    alerts = upto[upto["predicted_component"] != NO_ALERT] if len(upto) else upto
    features = feature_rows(con, lake, profile.name, alerts[["device_id", "ts"]]) if len(alerts) else None
    views = {"day": summarize(upto[upto["created_at"] >= start] if len(upto) else upto, features),
             "cumulative": summarize(upto, features)}
    frame = summary_frame(views)
    atomic_write(lake.partition_file(profile.name, TABLE, day), lambda tmp: frame.to_parquet(tmp, index=False))
    return views


def as_json(s: FeedbackSummary) -> dict:
    """A summary as JSON-safe data (NaN as None)."""
    def clean(value):
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return clean(dict(vars(s)))


@dataclass
class FeedbackRun:
    """The summaries of a run's days; the headline figures are its last day's."""

    per_day: dict[date, dict[str, FeedbackSummary]]
    lake_path: Path

    @property
    def metadata(self) -> dict[str, object]:
        """The last day's and the cumulative figures, each day's count and rate, and the lake path, as plain values."""
        last = list(self.per_day.values())[-1]
        day_view, cumulative = last["day"], last["cumulative"]
        return {
            "feedback": day_view.feedback,
            "false_positive_rate": _number(day_view.false_positive_rate),
            "mean_rating": _number(day_view.mean_rating),
            "cumulative_feedback": cumulative.feedback,
            "cumulative_false_positive_rate": _number(cumulative.false_positive_rate),
            "by_type": day_view.by_type,
            "summary": {"day": as_json(day_view), "cumulative": as_json(cumulative)},
            "per_day": {str(d): {"feedback": v["day"].feedback, "false_positive_rate": as_json(v["day"])["false_positive_rate"]}
                        for d, v in self.per_day.items()},
            "lake_path": self.lake_path,
        }


def summarize_days(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, fb: pd.DataFrame,
                   days: list[date]) -> FeedbackRun:
    """Write each day's feedback summary (feedback received up to the end of the last day in `fb`)."""
    per_day = {day: compute_feedback_summary(con, lake, profile, fb, day) for day in days}
    return FeedbackRun(per_day, lake.table_dir(profile.name, TABLE))


def _number(value: float | None) -> float:
    return float(value) if value is not None else math.nan
