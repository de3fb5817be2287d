"""`iot-mlops evaluate`: our model and the reference recipe on the same reference split and rows."""

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
from iot_mlops.partitions import daily_partitions, resolve_start
from iot_mlops.profiles import FleetProfile, source_folder
from iot_mlops.training.dataset import build_dataset
from iot_mlops.training.labels import compute_labels
from iot_mlops.training.model import ModelConfig
from iot_mlops.training.reference_recipe import run_recipe
from iot_mlops.training.train import TrainingResult, train_failure_model

TABLE = "evaluation_dataset"


@dataclass
class ReferenceEvaluation:
    ours: TrainingResult
    recipe: dict
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
            "reference_macro_f1": round(self.recipe["macro_f1"], 4),
            "reference_per_class": {c: {k: round(m[k], 4) for k in ("precision", "recall", "f1")} for c, m in self.recipe["per_class"].items()},
            "algorithm": self.algorithm,
            "rows": self.rows,
            "split": {"train_end": self.split[0], "test_start": self.split[1]},
        }


def prepare_lake(profile: FleetProfile, profile_dir: Path, lake: Lake, landing: Path) -> list[date]:
    """Ingest, featurize and label every day of the fleet that is not in the lake yet."""
    profile = resolve_start(profile, profile_dir)
    partitions = daily_partitions(profile, profile_dir)
    days = [date.fromisoformat(k) for k in partitions.get_partition_keys()]
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
    with connect() as con:
        report = build_dataset(con, lake, profile, split=split, table=TABLE)
        failures = con.execute(
            f"SELECT device_id, ts, value AS component FROM {lake.scan(profile.name, 'events')} WHERE kind = 'failure'"
        ).df()
    frame = pd.read_parquet(report.path)
    step(f"training ours ({config.algorithm}) on {int((frame['split'] != 'test').sum()):,} rows")
    ours = train_failure_model(frame, profile, failures, config)
    seen, test = frame[frame["split"] != "test"], frame[frame["split"] == "test"]
    step("training the reference recipe on the same rows")
    recipe = run_recipe(seen, test, profile)
    step("done")
    bounds = report.boundaries
    split_days = (str(bounds.val_end.date()), str(bounds.test_start.date()))
    rows = {"train": len(seen), "test": len(test)}
    horizon_h = int(profile.target.horizon.total_seconds() // 3600)
    return ReferenceEvaluation(ours=ours, recipe=recipe, rows=rows, split=split_days, horizon_h=horizon_h, algorithm=config.algorithm)


def format_table(result: ReferenceEvaluation) -> str:
    """Per-component precision/recall/F1 of ours and the recipe, side by side."""
    lines = [f"{'component':<10} {'ours P':>7} {'ours R':>7} {'ours F1':>8} | {'recipe P':>8} {'recipe R':>8} {'recipe F1':>9}"]
    for comp, m in result.ours.test.per_component.items():
        r = result.recipe["per_class"][comp]
        lines.append(f"{comp:<10} {m['precision']:>7.3f} {m['recall']:>7.3f} {m['f1']:>8.3f} | {r['precision']:>8.3f} {r['recall']:>8.3f} {r['f1']:>9.3f}")
    lines.append(f"{'macro F1':<10} {'':>7} {'':>7} {result.ours.test.macro_f1:>8.3f} | {'':>8} {'':>8} {result.recipe['macro_f1']:>9.3f}")
    events = result.ours.test.events
    lines.append(
        f"events: {events['failures_caught']}/{events['failures']} failures alerted within {result.horizon_h} h "
        f"(event recall {events['event_recall']:.3f}), mean lead {events['mean_lead_time_h']:.1f} h, "
        f"{events['false_alarms_per_device_month']:.2f} false alarms per device-month"
    )
    return "\n".join(lines)
