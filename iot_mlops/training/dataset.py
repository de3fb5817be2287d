"""Training datasets: point-in-time join of labels to features, split in time with gaps."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path

from iot_mlops.lake import Lake, atomic_write
from iot_mlops.profiles.schema import FleetProfile
from iot_mlops.profiles.schema_types import format_duration
from iot_mlops.training.labels import label_column

TABLE = "training_dataset"
SPLITS = ("train", "validation", "test")


class DatasetError(ValueError):
    """A training dataset cannot be built (missing inputs, or too little data for the split)."""


@dataclass(frozen=True)
class Boundaries:
    """Label-time bounds: train < train_end <= validation < val_end <= test, gaps >= horizon."""

    name: str
    train_end: datetime
    val_start: datetime
    val_end: datetime
    test_start: datetime


@dataclass
class DatasetReport:
    path: Path
    fingerprint: str
    boundaries: Boundaries
    window: tuple[datetime, datetime]
    rows: dict[str, int] = field(default_factory=dict)
    positives: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def metadata(self) -> dict[str, object]:
        """Rows and positives by split, fingerprint, window, split boundaries and path, as plain values."""
        b = self.boundaries
        return {
            "dagster/row_count": sum(self.rows.values()), "rows_by_split": self.rows, "positives_by_split": self.positives,
            "fingerprint": self.fingerprint, "split": b.name, "window": f"{self.window[0]} .. {self.window[1]}",
            "boundaries": {"train_end": str(b.train_end), "validation": f"{b.val_start} .. {b.val_end}",
                           "test_start": str(b.test_start)},
            "path": self.path,
        }


def _day(d) -> datetime:
    return datetime.combine(d, time())


def split_boundaries(profile: FleetProfile, start: datetime, end: datetime, split: str) -> Boundaries:
    """Where train, validation and test begin and end for a split named `time` or `reference`."""
    spec, horizon = profile.training, profile.target.horizon
    if split == "reference":
        for ref in spec.reference_splits:
            if end - _day(ref.test_start) >= timedelta(days=spec.min_test_days):
                if _day(ref.test_start) - _day(ref.train_end) < horizon:
                    raise DatasetError(f"{profile.name}: reference split gap is shorter than the horizon {format_duration(horizon)}")
                val_end = _day(ref.train_end)
                val_start = val_end - (val_end - start) * spec.validation_share
                return Boundaries("reference", val_start - horizon, val_start, val_end, _day(ref.test_start))
        raise DatasetError(f"{profile.name}: no reference split has {spec.min_test_days} days of test data before {end}")
    if split != "time":
        raise DatasetError(f"unknown split {split!r}: use 'time' or 'reference'")
    span = end - start
    test_start = end - span * spec.test_share
    val_end = test_start - horizon
    val_start = val_end - span * spec.validation_share
    train_end = val_start - horizon
    if train_end <= start:
        raise DatasetError(f"{profile.name}: {span.total_seconds() / 86400:.1f} days of labelled data are too short for a time "
                           f"split with {format_duration(horizon)} gaps")
    return Boundaries("time", train_end, val_start, val_end, test_start)


def _read(files: list[Path]):
    """The partitions as one Polars frame; columns united by name (as the lake's DuckDB scan does) when days differ."""
    import polars as pl

    try:
        return pl.read_parquet(files, hive_partitioning=False)
    except (pl.exceptions.ColumnNotFoundError, pl.exceptions.SchemaError):
        return pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="diagonal_relaxed")


def _join(profile: FleetProfile, labels, features, bounds: Boundaries, start: datetime, end: datetime):
    """Complete, in-service labels joined to the newest feature row at or before the label time, within max_age;
    the split of the label time (rows in the gaps dropped); sorted by (ts, device_id)."""
    import polars as pl

    ts, targets = pl.col("ts"), [label_column(c) for c in profile.components]
    labels = (labels.filter(pl.col("label_complete") & ~pl.col("out_of_service") & (ts >= start) & (ts < end))
              .select("device_id", "ts", *targets).sort("ts"))
    keys = features.select("device_id", pl.col("ts").alias("feature_ts")).with_row_index("row").sort("feature_ts")
    split = (pl.when(ts < bounds.train_end).then(pl.lit("train"))
             .when((ts >= bounds.val_start) & (ts < bounds.val_end)).then(pl.lit("validation"))
             .when(ts >= bounds.test_start).then(pl.lit("test")))
    # Joined and sorted on the keys alone: the wide feature columns are gathered once, at the end.
    joined = (labels.join_asof(keys, left_on="ts", right_on="feature_ts", by="device_id", strategy="backward",
                               tolerance=profile.features.max_age, check_sortedness=False)  # both sorted just above
              .filter(pl.col("feature_ts").is_not_null()).with_columns(split.alias("split")).filter(pl.col("split").is_not_null())
              .sort("ts", "device_id"))
    wide = features.drop("device_id", "ts")[joined["row"]]
    return pl.concat([joined.select("device_id", "ts", "feature_ts", "split", *targets), wide], how="horizontal")


def _write(frame, path: Path) -> None:
    """Write zstd Parquet with Polars; strings typed `string` for Arrow readers, as DuckDB wrote them."""
    import base64

    import pyarrow as pa

    schema = frame.head(0).to_arrow().schema
    schema = pa.schema([f.with_type(pa.string()) if f.type in (pa.large_string(), pa.string_view()) else f for f in schema])
    # Polars would store its own Arrow schema (`large_string`); the file's key-value metadata takes this one instead.
    frame.write_parquet(path, compression="zstd", metadata={"ARROW:schema": base64.b64encode(schema.serialize().to_pybytes()).decode()})


def _check_out_of_service(fleet: str, labels) -> None:
    """Labels written before rows of a failed device were flagged would count those rows as negatives, or,
    mixed with newer partitions, drop them unseen: ask for the labels to be rebuilt instead."""
    if "out_of_service" not in labels.columns or labels["out_of_service"].null_count():
        raise DatasetError(f"{fleet}: labels partitions written by an older version lack `out_of_service`; "
                           f"re-materialize {fleet}/labels over every day")


def build_dataset(lake: Lake, profile: FleetProfile, split: str = "time",
                  window_days: int | None = None, table: str = TABLE) -> DatasetReport:
    """Build and write `<fleet>/<table>` over the labelled window (the last `window_days`, or all).

    Polars reads, joins, sorts and writes: measured faster than DuckDB's ASOF JOIN and COPY for this (bench/training_dataset.py)."""
    import polars as pl

    fleet = profile.name
    label_files, feature_files = lake.files(fleet, "labels"), lake.files(fleet, "features")
    if not label_files or not feature_files:
        raise DatasetError(f"{fleet}: materialize {fleet}/features and {fleet}/labels first")
    labels = _read(label_files)
    _check_out_of_service(fleet, labels)
    first, last = labels.filter(pl.col("label_complete")).select(pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")).row(0)
    if first is None:
        raise DatasetError(f"{fleet}: no complete labels yet (labels need {format_duration(profile.target.horizon)} of later events)")
    end = last + timedelta(seconds=1)
    start = max(first, end - timedelta(days=window_days)) if window_days else first
    bounds = split_boundaries(profile, start, end, split)
    joined = _join(profile, labels, _read(feature_files), bounds, start, end)
    target = atomic_write(lake.table_file(fleet, table), lambda tmp: _write(joined, tmp))
    report = DatasetReport(path=target, fingerprint=fingerprint(target), boundaries=bounds, window=(start, end))
    targets = [label_column(c) for c in profile.components]
    counts = joined.group_by("split").agg(pl.len(), *(pl.col(t).sum() for t in targets))
    by_split = {name: rest for name, *rest in counts.iter_rows()}
    for name in (s for s in SPLITS if s in by_split):
        rows, *positives = by_split[name]
        report.rows[name] = int(rows)
        report.positives[name] = {c: int(n) for c, n in zip(profile.components, positives)}
    for name in SPLITS:
        if not report.rows.get(name):
            raise DatasetError(f"{fleet}: split {bounds.name} leaves no {name} rows in {start}..{end}")
    manifest = json.dumps({"fingerprint": report.fingerprint, "window": [str(start), str(end)], "rows": report.rows,
                           "positives": report.positives, "boundaries": {k: str(v) for k, v in asdict(bounds).items()}}, indent=2)
    atomic_write(target.with_suffix(".json"), lambda tmp: tmp.write_text(manifest))
    return report


def load_dataset_report(lake: Lake, fleet: str, table: str = TABLE) -> DatasetReport:
    """The report of the dataset last written to `<fleet>/<table>`."""
    path = lake.table_file(fleet, table)
    manifest = path.with_suffix(".json")
    if not path.is_file() or not manifest.is_file():
        raise DatasetError(f"{fleet}: no {table} yet; materialize {fleet}/{table} first")
    raw = json.loads(manifest.read_text())
    b = raw["boundaries"]
    bounds = Boundaries(b["name"], *(datetime.fromisoformat(b[k]) for k in ("train_end", "val_start", "val_end", "test_start")))
    start, end = (datetime.fromisoformat(v) for v in raw["window"])
    return DatasetReport(path=path, fingerprint=raw["fingerprint"], boundaries=bounds, window=(start, end),
                         rows=raw["rows"], positives=raw["positives"])


def fingerprint(path: Path) -> str:
    """Content fingerprint of a dataset file (writes are deterministic, so equal data, equal hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
