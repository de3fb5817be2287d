"""Profile sections for the closed loop: drift, data quality, retraining policy and the nightly schedule."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iot_mlops.profiles.schema_types import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Severity(_Strict):
    """A WARN and an ERROR threshold on a share or rate (ERROR >= WARN)."""

    warn: float = Field(ge=0)
    error: float = Field(ge=0)

    @model_validator(mode="after")
    def _order(self) -> Severity:
        if self.error < self.warn:
            raise ValueError(f"error threshold {self.error} is below warn threshold {self.warn}")
        return self


class SeasonalSignal(_Strict):
    """A sensor that moves with the hour (and season): its features are compared with the same slot of the reference."""

    sensor: str
    by: Literal["hour_of_day", "hour_of_week"] = "hour_of_day"
    # month: where the reference holds the day's month, that month's slot means; else the whole reference's.
    season: Literal["month", "none"] = "month"


class DriftSpec(_Strict):
    """How a day's features are compared with the training reference."""

    bins: int = Field(10, ge=2, le=100)  # quantile bins of the reference profile
    psi_threshold: float = Field(0.2, gt=0)  # numeric feature drifted at PSI >= this
    p_value: float = Field(0.05, gt=0, lt=1)  # chi-square / KS: drifted below this p-value
    # PSI and chi-square thresholds also calibrated on the reference's own days: a day is drifted only beyond
    # this quantile of what a healthy reference day reaches against the rest (see monitoring/calibration.py).
    calibrate: bool = True
    null_quantile: float = Field(0.99, ge=0.5, lt=1)
    # Features left out of drift: e.g. time-since counters, which grow past any training window by construction.
    ignore: list[str] = []  # fnmatch patterns
    # Sensors with a daily or seasonal cycle: each of their features is compared after removing the reference's mean
    # for the same hour (and month), so ordinary movement inside the reference is not drift (monitoring/seasonal.py).
    seasonal: list[SeasonalSignal] = []
    ks_features: list[str] = []  # numeric features also tested with KS on the raw reference sample
    reference_sample: int = Field(5000, ge=100)  # raw reference rows kept for KS and the Evidently report
    dataset_drift_share: float = Field(0.5, gt=0, le=1)  # dataset drifted when this share of features is
    evidently_rows: int = Field(5000, ge=100)  # bounded sample of the day for the Evidently HTML report
    # The HTML report plots the columns drifted by either test (at most evidently_max_columns,
    # strongest first) plus our evidently_top highest-PSI others: each plotted column adds ~70 kB.
    evidently_top: int = Field(5, ge=0)
    evidently_max_columns: int = Field(30, ge=1)


class QualitySpec(_Strict):
    """IoT data-quality checks on each telemetry partition."""

    stuck_window: Duration = timedelta(hours=1)  # a sensor not changing this long is stuck
    # A value resting at its sensor's min or max (no flow, element off) is a state, not a flat-line.
    stuck_ignore_bounds: bool = True
    stuck_share: Severity = Severity(warn=0.02, error=0.10)  # share of (device, sensor) pairs stuck
    dropout_share: Severity = Severity(warn=0.05, error=0.20)  # share of expected samples missing
    out_of_range_share: Severity = Severity(warn=0.001, error=0.01)
    spike_zscore: float = Field(6.0, gt=0)  # a step change this many std of the sensor's steps is a spike
    spike_rate: Severity = Severity(warn=0.001, error=0.01)
    quarantine_share: Severity = Severity(warn=0.01, error=0.05)


class SensorMonitoring(_Strict):
    """One sensor's exceptions to the fleet-wide checks (`monitoring.sensors.<sensor>`)."""

    # stuck: constant by design (a setpoint, an unused channel); spikes: bursty by nature; drift: its features
    # (named after it, and interactions using it) are left out of drift.
    ignore: list[Literal["stuck", "spikes", "drift"]] = []
    stuck_window: Duration | None = None  # instead of quality.stuck_window
    spike_zscore: float | None = Field(None, gt=0)  # instead of quality.spike_zscore
    psi_threshold: float | None = Field(None, gt=0)  # instead of drift.psi_threshold, for its features

    def ignores(self, check: str) -> bool:
        return check in self.ignore


class RetrainingPolicy(_Strict):
    """When sensors ask for retraining, and how often they may."""

    drift_share_high: float = Field(0.3, gt=0, le=1)  # arm: drift share at or above this ...
    drift_consecutive_days: int = Field(2, ge=1)  # ... on this many consecutive partitions
    drift_share_low: float = Field(0.1, ge=0, le=1)  # re-arm only after drift falls below this
    false_positive_rate: float = Field(0.5, gt=0, le=1)
    min_feedback: int = Field(20, ge=1)  # feedback records since the last training
    recall_floor: float = Field(0.5, ge=0, le=1)  # live recall below this triggers
    min_matured_failures: int = Field(10, ge=1)  # matured failure events needed to judge live recall
    quality_error_days: int = Field(2, ge=1)  # consecutive days with ERROR data-quality checks
    cooldown: Duration = timedelta(hours=24)
    min_new_days: int = Field(1, ge=0)  # feature days since the last training
    max_per_day: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _hysteresis(self) -> RetrainingPolicy:
        if self.drift_share_low > self.drift_share_high:
            raise ValueError(f"drift_share_low {self.drift_share_low} is above drift_share_high {self.drift_share_high}")
        return self


class ScheduleSpec(_Strict):
    """The nightly run of the previous day's partitions."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"cron {value!r} must have five fields")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class MonitoringSpec(_Strict):
    drift: DriftSpec = DriftSpec()
    quality: QualitySpec = QualitySpec()
    retraining: RetrainingPolicy = RetrainingPolicy()
    schedule: ScheduleSpec = ScheduleSpec()
    sensors: dict[str, SensorMonitoring] = {}  # per-sensor exceptions, by sensor name

    def sensor(self, name: str) -> SensorMonitoring:
        """The sensor's exceptions (none unless the profile names it)."""
        return self.sensors.get(name, _NO_EXCEPTIONS)


_NO_EXCEPTIONS = SensorMonitoring()
