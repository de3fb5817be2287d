"""`iot-mlops evaluate`: our model, the reference recipe and a plain baseline on the same split and rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from iot_mlops.features import compute_features
from iot_mlops.ingestion.ingest import ingest_devices, ingest_events, ingest_telemetry
from iot_mlops.lake import Lake, connect
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import FleetProfile, source_folder
from iot_mlops.training.dataset import build_dataset
from iot_mlops.training.labels import compute_labels
from iot_mlops.training.model import ModelConfig
from iot_mlops.training.reference_recipe import run_baseline, run_recipe
from iot_mlops.training.train import TrainingResult, train_failure_model

TABLE = "evaluation_dataset"


@dataclass
class ReferenceEvaluation:
    ours: TrainingResult
    recipe: dict
    baseline: dict
    rows: dict[str, int]
    split: tuple[str, str]
    horizon_h: int
    algorithm: str

    def summary(self) -> dict:
        """The JSON the command prints last."""
        per_class = {c: {k: round(m[k], 4) for k in ("precision", "recall", "f1")} for c, m in self.ours.test.per_component.items()}
        return {
            "macro_f1": round(self.ours.test.macro_f1, 4),
            "per_class": per_class,
            "event_recall": round(self.ours.test.events["event_recall"], 4),
            "mean_lead_time_h": round(self.ours.test.events["mean_lead_time_h"], 2),
            "false_alarms_per_device_month": round(self.ours.test.events["false_alarms_per_device_month"], 4),
            "per_component": component_summary(self.ours.test.per_component, self.ours.test.component_events),
            "thresholds": {c: round(t, 6) for c, t in self.ours.thresholds.items()},
            "validation": self.ours.search.validation,
            "reference_macro_f1": round(self.recipe["macro_f1"], 4),
            "reference_per_class": {c: {k: round(m[k], 4) for k in ("precision", "recall", "f1")} for c, m in self.recipe["per_class"].items()},
            "baseline": side_summary(self.baseline),
            "algorithm": self.algorithm,
            "rows": self.rows,
            "split": {"train_end": self.split[0], "test_start": self.split[1]},
        }


def prepare_lake(profile: FleetProfile, profile_dir: Path, lake: Lake, landing: Path) -> list[date]:
    """Ingest, featurize and label every day of the fleet that is not in the lake yet."""
    ctx = FleetContext.of(profile, profile_dir)
    profile, days = ctx.profile, [date.fromisoformat(k) for k in ctx.partitions.get_partition_keys()]
    labelled = set(lake.partitions(profile.name, "labels"))
    if all(d in labelled for d in days):
        return days
    folder = source_folder(profile, profile_dir, landing)
    with connect() as con:
        ingest_devices(con, lake, profile, folder)
        ingest_telemetry(con, lake, profile, folder, days)
        ingest_events(con, lake, profile, folder, days)
        compute_features(con, lake, profile, days)
        compute_labels(con, lake, profile, days)
    return days


def evaluate_reference(profile: FleetProfile, profile_dir: Path, lake: Lake, landing: Path, config: ModelConfig,
                       progress: Callable[[str], None] = lambda _: None) -> ReferenceEvaluation:
    """Train ours and the recipe on the split's train+validation rows; score both on test.

    The split is the profile's reference split when it has one, else a time split with horizon gaps.
    """
    started = time.perf_counter()
    step = lambda text: progress(f"[{time.perf_counter() - started:5.1f}s] {text}")  # noqa: E731
    step("lake: ingesting, featurizing and labelling the days not in it yet")
    prepare_lake(profile, profile_dir, lake, landing)
    split = "reference" if profile.training.reference_splits else "time"
    step(f"dataset: {split} split")
    report = build_dataset(lake, profile, split=split, table=TABLE)
    with connect() as con:
        failures = con.execute(
            f"SELECT device_id, ts, value AS component FROM {lake.scan(profile.name, 'events')} WHERE kind = 'failure'"
        ).df()
    frame = pd.read_parquet(report.path)
    step(f"training ours ({config.algorithm}) on {int((frame['split'] != 'test').sum()):,} rows")
    ours = train_failure_model(frame, profile, failures, config)
    seen, test = frame[frame["split"] != "test"], frame[frame["split"] == "test"]
    step("training the reference recipe on the same rows")
    recipe = run_recipe(seen, test, profile, failures)
    step("training the baseline (HistGradientBoosting on raw sensors and their means) on the same rows")
    baseline = run_baseline(seen, test, profile, failures)
    step("done")
    bounds = report.boundaries
    split_days = (str(bounds.val_end.date()), str(bounds.test_start.date()))
    rows = {"train": len(seen), "test": len(test)}
    horizon_h = int(profile.target.horizon.total_seconds() // 3600)
    return ReferenceEvaluation(ours=ours, recipe=recipe, baseline=baseline, rows=rows, split=split_days, horizon_h=horizon_h, algorithm=config.algorithm)


def component_summary(per_component: dict[str, dict], events: dict[str, dict]) -> dict:
    """Per component: row-level PR-AUC and, per failure event, recall and false alarms per device-month."""
    out = {}
    for comp, m in per_component.items():
        e = events.get(comp, {})
        out[comp] = {"pr_auc": round(m["pr_auc"], 4), "positive_rows": m["support"], "failures": e.get("failures"),
                     "failures_caught": e.get("failures_caught"), "event_recall": round(e.get("event_recall", float("nan")), 4),
                     "false_alarms_per_device_month": round(e.get("false_alarms_per_device_month", float("nan")), 4)}
    return out


def side_summary(side: dict) -> dict:
    """A compared model's figures for the JSON: macro F1, per component, and its events."""
    events = side["events"]
    return {"macro_f1": round(side["macro_f1"], 4),
            "per_class": {c: {k: round(m[k], 4) for k in ("precision", "recall", "f1")} for c, m in side["per_class"].items()},
            "event_recall": round(events["event_recall"], 4),
            "false_alarms_per_device_month": round(events["false_alarms_per_device_month"], 4)}


def format_table(result: ReferenceEvaluation) -> str:
    """Per-component precision/recall/F1 of ours, the recipe and the baseline side by side; then their events."""
    sides = [("ours", result.ours.test.per_component, result.ours.test.macro_f1, result.ours.test.events),
             ("recipe", result.recipe["per_class"], result.recipe["macro_f1"], result.recipe["events"]),
             ("baseline", result.baseline["per_class"], result.baseline["macro_f1"], result.baseline["events"])]
    lines = [f"{'component':<16}" + " | ".join(f"{name + ' P':>10} {name + ' R':>10} {name + ' F1':>11}" for name, *_ in sides)]
    for comp in result.ours.test.per_component:
        lines.append(f"{comp:<16}" + " | ".join(f"{per[comp]['precision']:>10.3f} {per[comp]['recall']:>10.3f} {per[comp]['f1']:>11.3f}"
                                                for _, per, *_ in sides))
    lines.append(f"{'macro F1':<16}" + " | ".join(f"{'':>10} {'':>10} {macro:>11.3f}" for _, _, macro, _ in sides))
    for name, _, _, events in sides:
        lead = f", mean lead {events['mean_lead_time_h']:.1f} h"
        lines.append(
            f"events ({name}): {events['failures_caught']}/{events['failures']} failures alerted within {result.horizon_h} h "
            f"(event recall {events['event_recall']:.3f}){lead}, {events['false_alarms_per_device_month']:.2f} false alarms "
            "per device-month"
        )
    for comp, m in component_summary(result.ours.test.per_component, result.ours.test.component_events).items():
        lines.append(f"ours, {comp}: PR-AUC {m['pr_auc']:.3f}, {m['failures_caught']}/{m['failures']} failures alerted "
                     f"(event recall {m['event_recall']:.3f}), {m['false_alarms_per_device_month']:.2f} false alarms per device-month")
    return "\n".join(lines)
