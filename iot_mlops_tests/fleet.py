"""A small synthetic fleet for tests: a profile YAML and the daily source files it reads."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml

from iot_mlops.features.assets import features_assets
from iot_mlops.ingestion.assets import ingestion_assets
from iot_mlops.lake import Lake
from iot_mlops.lake.resource import LakeResource
from iot_mlops.partitions import FleetContext
from iot_mlops.profiles import FleetProfile, load_profile

PROFILES = Path(__file__).resolve().parents[1] / "profiles"  # the shipped profiles
NAME = "tiny"
START = date(2024, 1, 1)
DAYS = [START + timedelta(days=i) for i in range(4)]
DEVICES = ["d1", "d2", "d3"]
EVENT_COLUMNS = {"failure": "component", "maintenance": "component", "error": "code"}
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

PROFILE = {
    "name": NAME,
    "description": "Three test pumps.",
    "device_type": "pump",
    "owners": ["team:tests"],
    "device_column": "device",
    "timestamp_column": "time",
    "sampling_interval": "1h",
    "sensors": [
        {"name": "temp", "unit": "degC", "min": 0, "max": 100},
        {"name": "pressure", "unit": "bar", "min": 0, "max": 10},
    ],
    "components": ["impeller", "seal"],
    "error_codes": ["E1", "E2"],
    "source": {
        "kind": "tables",
        "path": "../source",
        "telemetry": {"path": "telemetry/{date}.csv"},
        "devices": {
            "path": "devices.csv",
            "attributes": [{"name": "model", "kind": "categorical"}, {"name": "age", "kind": "numeric", "min": 0, "max": 30}],
        },
        "events": [
            {"kind": "failure", "path": "failures/{date}.csv", "value_column": "component"},
            {"kind": "maintenance", "path": "maintenance/{date}.csv", "value_column": "component"},
            {"kind": "error", "path": "errors/{date}.csv", "value_column": "code"},
        ],
    },
    "partitions": {"start": START.isoformat(), "end": DAYS[-1].isoformat()},
    "features": {
        "step": "1h",
        "windows": ["1h", "3h"],
        "aggregations": ["mean", "std", "min", "max"],
        "differences": True,
        "interactions": [{"name": "temp_minus_pressure", "left": "temp", "op": "difference", "right": "pressure"}],
        "error_window": "6h",
        "max_age": "2h",
    },
}


def stamp(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=hour, minutes=minute)


def reading(device: str, ts: datetime) -> dict:
    """A valid reading whose values vary by device and hour."""
    i, h = DEVICES.index(device) if device in DEVICES else 0, ts.hour + 24 * ts.toordinal()
    return {"device": device, "time": ts.strftime("%Y-%m-%d %H:%M:%S"), "temp": 20.0 + (7 * i + 3 * h) % 50 + 0.25, "pressure": 1.0 + ((i + h) % 8) * 0.5}


def clean_day(day: date) -> list[dict]:
    return [reading(d, stamp(day, h)) for d in DEVICES for h in range(24)]


def garbled_day(day: date) -> list[dict]:
    """A day where one reading in three is not a number: quarantined, so the quarantine share is an ERROR."""
    rows = clean_day(day)
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["temp"] = "n/a"
    return rows


class Fleet:
    """Profile under <root>/profiles, sources under <root>/source, lake under <root>/lake."""

    def __init__(self, root: Path, lake_root: Path, landing_root: Path):
        self.root = Path(root)
        self.profile_dir = self.root / "profiles"
        self.source = self.root / "source"
        self.lake_root = Path(lake_root)
        self.landing_root = Path(landing_root)
        self.spec = copy.deepcopy(PROFILE)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def profile_file(self) -> Path:
        return self.profile_dir / f"{self.name}.yaml"

    def write_profile(self) -> FleetProfile:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self.profile_file.write_text(yaml.safe_dump(self.spec, sort_keys=False))
        return load_profile(self.profile_file)

    def profile(self) -> FleetProfile:
        return load_profile(self.profile_file)

    def path(self, table: str, day: date | None = None) -> Path:
        """Source file of a table (telemetry, devices, failure, maintenance, error) for a day."""
        source = self.spec["source"]
        if table in ("telemetry", "devices"):
            relative = source[table]["path"]
        else:
            relative = next(e["path"] for e in source["events"] if e["kind"] == table)
        return self.source / relative.format(date=day.isoformat() if day else "")

    def write(self, table: str, rows: list[dict], day: date | None = None, columns: list[str] | None = None) -> Path:
        """Write rows as CSV (all values as given) or Parquet, by the file suffix."""
        target = self.path(table, day)
        target.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(rows, columns=columns)
        if target.suffix == ".parquet":
            frame.to_parquet(target, index=False)
        else:
            frame.to_csv(target, index=False)
        return target

    def write_events(self, day: date, kind: str, rows: list[tuple[str, datetime, str]]) -> Path:
        value = EVENT_COLUMNS[kind]
        records = [{"device": d, "time": ts.strftime("%Y-%m-%d %H:%M:%S"), value: v} for d, ts, v in rows]
        return self.write(kind, records, day, columns=["device", "time", value])

    def write_clean(self, days: list[date] = DAYS) -> None:
        """Devices, clean telemetry and no events for the days."""
        self.write("devices", [{"device": d, "model": f"m{i % 2}", "age": 3 + i} for i, d in enumerate(DEVICES)])
        for day in days:
            self.write("telemetry", clean_day(day), day)
            for kind in EVENT_COLUMNS:
                self.write_events(day, kind, [])

    def assets(self) -> list[dg.AssetsDefinition]:
        profile = self.profile()
        return [*ingestion_assets(FleetContext.of(profile, self.profile_dir)), *features_assets(FleetContext.of(profile, self.profile_dir))]

    def resources(self) -> dict:
        return {"lake": LakeResource(root=str(self.lake_root), landing_root=str(self.landing_root))}

    def materialize(self, *tables: str, day: date | None = None, days: tuple[date, date] | None = None, instance=None):
        """Materialize tables (default: ingestion) for one day or a day range, without raising."""
        keys = [dg.AssetKey([self.name, t]) for t in tables or ("devices", "telemetry", "events")]
        tags = {RANGE_START: days[0].isoformat(), RANGE_END: days[1].isoformat()} if days else None
        return dg.materialize(
            self.assets(),
            selection=keys,
            partition_key=day.isoformat() if day else None,
            tags=tags,
            resources=self.resources(),
            instance=instance,
            raise_on_error=False,
        )

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_root)

    def file(self, table: str, day: date | None = None) -> Path:
        """A lake file by the documented layout: `<lake>/<fleet>/<table>[/date=YYYY-MM-DD]/data.parquet`.

        `quarantine/<table>` names the table's `quarantine.parquet`, beside its `data.parquet`.
        """
        name = "data.parquet"
        if table.startswith("quarantine/"):
            table, name = table.removeprefix("quarantine/"), "quarantine.parquet"
        folder = self.lake_root / self.name / table
        return (folder / f"date={day.isoformat()}" if day else folder) / name

    def read(self, table: str, day: date | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.file(table, day))

    def quarantine(self, table: str, day: date | None = None) -> pd.DataFrame:
        """Quarantined rows with `record` parsed back from JSON."""
        frame = self.read(f"quarantine/{table}", day)
        frame["record"] = [json.loads(r) for r in frame["record"]]
        return frame


def materializations(result) -> dict[tuple[str, str | None], dict]:
    """Metadata values of each (asset table, partition) materialized in a run."""
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        out[(m.asset_key.path[-1], m.partition)] = {k: v.value for k, v in m.metadata.items()}
    return out


def check_results(result) -> dict[tuple[str, str], object]:
    """Asset check evaluations of a run, by (asset table, check name)."""
    return {(c.asset_key.path[-1], c.check_name): c for c in result.get_asset_check_evaluations()}
