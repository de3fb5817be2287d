"""Fleet profile schema: everything assets need to know about one fleet, validated strictly."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

from iot_mlops.profiles.monitoring import MonitoringSpec
from iot_mlops.profiles.schema_types import Duration, Identifier


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorSpec(StrictModel):
    """A numeric sensor column with its unit and the range a working sensor can report."""

    name: Identifier
    unit: str
    min: FiniteFloat
    max: FiniteFloat
    column: str | None = None  # name in the source when it differs
    resolution: FiniteFloat | None = Field(None, gt=0)  # smallest step the sensor reports (the simulator rounds to it)

    @property
    def source_column(self) -> str:
        return self.column or self.name

    @model_validator(mode="after")
    def _range(self) -> SensorSpec:
        if self.min >= self.max:
            raise ValueError(f"sensor {self.name}: min {self.min} must be below max {self.max}")
        return self


class AttributeSpec(StrictModel):
    """A static device attribute (model, age, ...)."""

    name: Identifier
    kind: Literal["categorical", "numeric"]
    column: str | None = None
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    @property
    def source_column(self) -> str:
        return self.column or self.name

    @model_validator(mode="after")
    def _range(self) -> AttributeSpec:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"attribute {self.name}: min {self.min} must be below max {self.max}")
        return self


class TableSpec(StrictModel):
    """A source table: a path (relative to the source folder) that may contain `{date}`."""

    path: str
    device_column: str | None = None
    timestamp_column: str | None = None

    @property
    def is_daily(self) -> bool:
        return "{date}" in self.path

    @field_validator("path")
    @classmethod
    def _placeholders(cls, path: str) -> str:
        try:
            path.format(date="2000-01-01")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"path {path!r} may contain only the {{date}} placeholder ({error!r})") from None
        return path


class EventTableSpec(TableSpec):
    """Failures and maintenance carry a component column; errors carry a code column."""

    kind: Literal["failure", "maintenance", "error"]
    value_column: str


class DeviceTableSpec(TableSpec):
    attributes: list[AttributeSpec]


class DriftScenarios(StrictModel):
    """Drift the simulator injects from a given day on; all off by default."""

    seasonal_inlet_shift_from: date | None = None
    seasonal_inlet_shift_c: float = -6.0
    recalibrated_units_from: date | None = None
    recalibrated_share: float = Field(0.2, ge=0, le=1)
    new_model_batch_from: date | None = None
    new_model_batch_size: int = Field(50, ge=0)


class SimulatorSpec(StrictModel):
    """Water-heater fleet simulator settings; same seed and settings, same data."""

    devices: int = Field(200, ge=1)
    seed: int = 42
    epoch: date = date(2026, 1, 1)
    drift: DriftScenarios = DriftScenarios()


class SourceSpec(StrictModel):
    kind: Literal["tables", "simulator"]
    path: str | None = None  # folder; ${VAR:-default} expands; relative to the profile file
    telemetry: TableSpec
    devices: DeviceTableSpec
    events: list[EventTableSpec]
    simulator: SimulatorSpec | None = None

    @model_validator(mode="after")
    def _kind(self) -> SourceSpec:
        if self.kind == "tables" and not self.path:
            raise ValueError("source.path is required for kind 'tables'")
        if self.kind == "simulator" and self.simulator is None:
            raise ValueError("source.simulator is required for kind 'simulator'")
        return self


class InteractionSpec(StrictModel):
    """A cross-sensor feature computed from two sensors' step means."""

    name: Identifier
    left: Identifier
    op: Literal["difference", "ratio", "product"]
    right: Identifier


class RelativeSpec(StrictModel):
    """Each sensor's step mean against the device's own trailing baseline and against its cohort at the same step."""

    baseline: Duration | None = timedelta(days=7)  # z-score over the device's step means in this trailing window
    # The baseline ends this long before the row's step, so a failure building up over that time is not absorbed by it.
    baseline_gap: Duration | None = None
    cohort: Identifier | None = None  # a categorical device attribute: difference from the median of its devices at the step

    @model_validator(mode="after")
    def _some(self) -> RelativeSpec:
        if self.baseline is None and self.cohort is None:
            raise ValueError("relative: set a baseline, a cohort or both")
        if self.baseline is None and self.baseline_gap is not None:
            raise ValueError("relative: baseline_gap needs a baseline")
        return self


class FeatureSpec(StrictModel):
    step: Duration
    windows: list[Duration] = Field(min_length=1)
    aggregations: list[Literal["mean", "std", "min", "max"]] = ["mean", "std"]
    differences: bool = False
    interactions: list[InteractionSpec] = []
    error_window: Duration = timedelta(hours=24)
    max_age: Duration = timedelta(hours=6)  # online features older than this are stale
    relative: RelativeSpec | None = None  # device-relative features; off when absent
    # Time-since counters saturate here, and an event not seen in the lake reads as the cap: a counter that keeps
    # growing past the training window is read by a model beyond anything it saw.
    since_cap: Duration | None = None

    @model_validator(mode="after")
    def _windows(self) -> FeatureSpec:
        for window in self.windows:
            if window % self.step:
                raise ValueError(f"window {window} is not a multiple of step {self.step}")
        if self.error_window % self.step:
            raise ValueError(f"error_window {self.error_window} is not a multiple of step {self.step}")
        relative = self.relative
        for name in ("baseline", "baseline_gap"):
            value = getattr(relative, name, None)
            if value is not None and value % self.step:
                raise ValueError(f"relative.{name} {value} is not a multiple of step {self.step}")
        if relative and relative.baseline is not None:
            if relative.baseline < 2 * self.step:
                raise ValueError(f"relative.baseline {relative.baseline} must span at least two steps of {self.step}")
            # Baselines read the step means of earlier days back from their stored feature rows.
            if "mean" not in self.aggregations or self.step not in self.windows:
                raise ValueError(f"relative.baseline needs the step mean as a feature: aggregation 'mean' and window {self.step}")
        return self

    @property
    def baseline_reach(self) -> timedelta:
        """How far before a feature time the device's baseline starts (zero without one); read from stored features."""
        relative = self.relative
        if relative is None or relative.baseline is None:
            return timedelta(0)
        return relative.baseline + (relative.baseline_gap or timedelta(0)) + self.step

    @property
    def lookback(self) -> timedelta:
        return max([*self.windows, self.error_window, self.step * 2])


class TargetSpec(StrictModel):
    prediction_type: Identifier = "component_failure"
    horizon: Duration = timedelta(hours=24)
    # How long a failed device stays out of service when no maintenance of the failed component within the horizon
    # says when it was repaired. None means one feature step: the failing reading itself is all we know was bad, and a longer
    # guess would drop healthy rows from every fleet that does log its repairs.
    out_of_service: Duration | None = None


class SplitSpec(StrictModel):
    """A fixed train/test split: train on label times before train_end, test from test_start."""

    train_end: date
    test_start: date

    @model_validator(mode="after")
    def _order(self) -> SplitSpec:
        if self.test_start < self.train_end:
            raise ValueError(f"test_start {self.test_start} is before train_end {self.train_end}")
        return self


class TrainingSpec(StrictModel):
    """How training datasets are split in time (gaps of at least the horizon between parts)."""

    validation_share: float = Field(0.2, gt=0, lt=0.5)
    test_share: float = Field(0.2, gt=0, lt=0.5)
    # The first split whose test part has at least min_test_days of labelled data is `reference`.
    reference_splits: list[SplitSpec] = []
    min_test_days: int = Field(7, ge=1)
    healthy_margin: Duration = timedelta(hours=72)  # anomaly model: this far from any failure is healthy
    algorithm: Literal["gradient_boosting", "random_forest", "logistic_regression"] = "gradient_boosting"
    # How logistic regression reads each feature: a z-score (standard), or through its training quantiles (quantile),
    # where nothing beyond the training range weighs more than the most extreme value seen.
    scaling: Literal["standard", "quantile"] = "standard"
    # The fleet's alert budget. Each component's threshold: the most failures caught on validation within this many
    # false alarms per device-month (runs of alerts with no failure of the component a horizon later); unset: the best
    # F-beta. The champion gate promotes no model above it (unless it cuts the champion's own excess).
    max_false_alarms_per_device_month: float | None = Field(None, gt=0)


class PartitionSpec(StrictModel):
    start: date | Literal["auto"]  # auto: the first day the telemetry covers (partitions.partition_start)
    end: date | Literal["auto"] | None = None  # auto: the last day the telemetry covers

    @model_validator(mode="after")
    def _order(self) -> PartitionSpec:
        if isinstance(self.start, date) and isinstance(self.end, date) and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class FleetProfile(StrictModel):
    """One fleet: its source, schema, valid ranges, features and prediction target."""

    name: Identifier
    description: str
    device_type: Identifier
    owners: list[str] = []
    device_column: str
    timestamp_column: str
    # A local time that a clock change repeats: quarantined, or read as its earliest or latest UTC instant.
    ambiguous_local_time: Literal["quarantine", "earliest", "latest"] = "quarantine"
    max_future: Duration = timedelta(days=1)  # readings later than now + this are quarantined
    sampling_interval: Duration
    sensors: list[SensorSpec] = Field(min_length=1)
    components: list[Identifier] = Field(min_length=1)
    error_codes: list[str] = []
    source: SourceSpec
    partitions: PartitionSpec
    features: FeatureSpec
    target: TargetSpec = TargetSpec()
    training: TrainingSpec = TrainingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    @model_validator(mode="after")
    def _references(self) -> FleetProfile:
        names = [s.name for s in self.sensors]
        if len(set(names)) != len(names):
            raise ValueError("sensor names must be unique")
        for inter in self.features.interactions:
            for ref in (inter.left, inter.right):
                if ref not in names:
                    raise ValueError(f"interaction {inter.name} refers to unknown sensor {ref!r}")
        named = [*self.monitoring.sensors, *(s.sensor for s in self.monitoring.drift.seasonal)]
        unknown = sorted({n for n in named if n not in names})
        if unknown:
            raise ValueError(f"monitoring names unknown sensor(s) {unknown} (sensors: {', '.join(names)})")
        cohort = self.features.relative and self.features.relative.cohort
        if cohort:
            categorical = [a.name for a in self.source.devices.attributes if a.kind == "categorical"]
            if cohort not in categorical:
                raise ValueError(f"features.relative.cohort {cohort!r} is not a categorical device attribute (those are: {categorical})")
        return self

    @property
    def sensor_names(self) -> list[str]:
        return [s.name for s in self.sensors]
