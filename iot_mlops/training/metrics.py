"""Metrics that matter for maintenance: per-component scores and event-level recall and lead time."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd


def component_metrics(y_true: pd.DataFrame, y_pred: pd.DataFrame, y_prob: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Precision, recall, F1, PR-AUC, ROC-AUC and support per component (columns = components)."""
    # scikit-learn takes a second to import: event metrics and every definitions load do without it.
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

    out = {}
    for comp in y_true.columns:
        truth, pred, prob = y_true[comp].to_numpy(), y_pred[comp].to_numpy(), y_prob[comp].to_numpy()
        both = len(np.unique(truth)) == 2
        out[comp] = {
            "precision": float(precision_score(truth, pred, zero_division=0)),
            "recall": float(recall_score(truth, pred, zero_division=0)),
            "f1": float(f1_score(truth, pred, zero_division=0)),
            "pr_auc": float(average_precision_score(truth, prob)) if both else float("nan"),
            "roc_auc": float(roc_auc_score(truth, prob)) if both else float("nan"),
            "support": int(truth.sum()),
        }
    return out


def macro_f1(per_component: dict[str, dict[str, float]]) -> float:
    """Mean F1 over the components that fail in the evaluated rows (F1 is undefined without positives); 0 if none do."""
    scores = [m["f1"] for m in per_component.values() if m["support"] > 0]
    return float(np.mean(scores)) if scores else 0.0


def per_component_markdown(per_component: dict[str, dict[str, float]],
                           events: dict[str, dict[str, float]] | None = None) -> str:
    """A Markdown table of the per-component scores (and failure events, when given); NaN shows as '-'."""
    fmt = lambda v: "-" if np.isnan(v) else f"{v:.3f}"  # noqa: E731
    head = "| component | precision | recall | F1 | PR-AUC | positive rows |"
    if events is not None:
        head += " failures caught | event recall | false alarms per device-month |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for comp, m in per_component.items():
        e = (events or {}).get(comp)
        tail = "" if events is None else (
            f" {e['failures_caught']}/{e['failures']} | {fmt(e['event_recall'])} | {e['false_alarms_per_device_month']:.2f} |"
            if e else " | | |")
        if m["support"] == 0:
            lines.append(f"| {comp} | no failures in test | | | | 0 |{tail}")
            continue
        lines.append(f"| {comp} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {fmt(m['pr_auc'])} | {m['support']} |{tail}")
    return "\n".join(lines)


def component_event_metrics(failures: pd.DataFrame, predictions: pd.DataFrame, horizon: timedelta,
                            step: timedelta) -> dict[str, dict[str, float]]:
    """`event_metrics` of each component alone: its failures caught, its false alarms per device-month."""
    components = [c for c in predictions.columns if c not in ("device_id", "ts")]
    return {c: event_metrics(failures[failures["component"] == c], predictions[["device_id", "ts", c]], horizon, step)
            for c in components}


def event_metrics(
    failures: pd.DataFrame,
    predictions: pd.DataFrame,
    horizon: timedelta,
    step: timedelta,
    min_lead: timedelta = timedelta(0),
) -> dict[str, float]:
    """Event-level scores over the scored period.

    failures: device_id, ts, component (each failure once). predictions: device_id, ts and one
    0/1 column per component. A failure is caught when a positive for its component came in
    the `horizon` before it, at least `min_lead` ahead; lead time counts from the first such
    alert. A false alarm is a run of consecutive positives none of which has a failure of its component
    within the horizon after it (a run that goes on past the failure it caught is no false alarm). Rows missing
    across a failure of the component (the device out of service) do not end a run.
    """
    predictions = predictions.sort_values(["device_id", "ts"])
    failures = failures[failures["device_id"].isin(predictions["device_id"].unique())]
    start, end = predictions["ts"].min(), predictions["ts"].max()
    in_scope = failures[(failures["ts"] >= start + horizon) & (failures["ts"] <= end)]
    caught, leads = 0, []
    for comp, group in in_scope.groupby("component"):
        if comp not in predictions:
            continue
        alerts = predictions.loc[predictions[comp] == 1, ["device_id", "ts"]]
        merged = group.merge(alerts, on="device_id", suffixes=("", "_alert"))
        window = merged[(merged["ts_alert"] > merged["ts"] - horizon) & (merged["ts_alert"] <= merged["ts"] - min_lead)]
        first = window.groupby(["device_id", "ts"])["ts_alert"].min()
        caught += len(first)
        leads += list(((first.index.get_level_values("ts") - first.to_numpy()) / pd.Timedelta(hours=1)))
    false_alarms = 0
    for comp in [c for c in predictions.columns if c not in ("device_id", "ts")]:
        alerts = predictions.loc[predictions[comp] == 1, ["device_id", "ts"]].reset_index(drop=True)
        if alerts.empty:
            continue
        comp_failures = failures[failures["component"] == comp]
        same_device = alerts["device_id"] == alerts["device_id"].shift()
        gaps = alerts[same_device & (alerts["ts"].diff() > step)].assign(prev=alerts["ts"].shift())
        # Training data leaves out the rows of a failed device, so an alert going on through the outage shows a gap.
        spans = gaps.reset_index().merge(comp_failures, on="device_id", suffixes=("", "_failed"))
        bridged = alerts.index.isin(spans.loc[(spans["ts_failed"] >= spans["prev"]) & (spans["ts_failed"] < spans["ts"]), "index"])
        new_run = ~same_device | ((alerts["ts"].diff() > step) & ~bridged)
        runs = alerts.assign(run=new_run.cumsum()).groupby("run").agg(
            device_id=("device_id", "first"), first=("ts", "min"), last=("ts", "max"))
        merged = runs.reset_index().merge(comp_failures, on="device_id", how="left")
        hit = merged[(merged["ts"] >= merged["first"]) & (merged["ts"] < merged["last"] + horizon)]["run"].unique()
        false_alarms += len(set(runs.index) - set(hit))
    device_months = predictions["device_id"].nunique() * max((end - start) / pd.Timedelta(days=30), 1e-9)
    return {
        "event_recall": caught / len(in_scope) if len(in_scope) else float("nan"),
        "failures": int(len(in_scope)),
        "failures_caught": int(caught),
        "mean_lead_time_h": float(np.mean(leads)) if leads else float("nan"),
        "false_alarms_per_device_month": false_alarms / device_months,
    }
