"""Request and response bodies of the prediction service."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from iot_mlops.opstore.feedback import FeedbackIn
from iot_mlops.profiles.schema_types import DEVICE_ID, IDENTIFIER

BATCH_MAX = 100  # devices per batch request; more is a 422 (a body over the byte limit is a 413 before parsing)
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold NUL characters

DeviceType = Annotated[str, Field(pattern=IDENTIFIER, max_length=64, examples=["water_heater"])]
DeviceId = Annotated[str, Field(pattern=DEVICE_ID, examples=["WH-1001"])]
PredictionType = Annotated[str, Field(pattern=IDENTIFIER, max_length=64, examples=["component_failure"])]
JsonValue = float | int | str | bool | None
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: object) -> object:
    """Only YYYY-MM-DD: pydantic would otherwise read `0` as 1970-01-01."""
    if isinstance(value, str) and not _ISO_DAY.match(value):
        raise ValueError("expected a day as YYYY-MM-DD")
    return value


def _has_next_day(value: date) -> date:
    """A day is queried as [day, day + 1): the last day of the calendar has no end."""
    if value == date.max:
        raise ValueError(f"day out of range: at most {date.max - timedelta(days=1)}")
    return value


Day = Annotated[date, BeforeValidator(_iso_day), AfterValidator(_has_next_day)]


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorOut(Out):
    detail: str


class ContributionOut(Out):
    feature: str
    value: JsonValue = Field(description="The feature's value in this prediction's input row (null when missing).")
    contribution: float = Field(description="Its share of `output - base_value`, in `unit`.")


class ExplanationOut(Out):
    method: str = Field(description="linear_contributions (logistic regression: coef x standardized value), "
                                    "tree_path_attribution or isolation_path_attribution (Saabas path attribution), "
                                    "or unavailable.")
    unit: str = Field(description="log_odds, probability or isolation_path_shortened.")
    target: str = Field(description="The outcome explained: the alerted component (else the likeliest), or anomalous/normal.")
    base_value: float
    output: float = Field(description="base_value + the sum of all contributions: the model's raw output.")
    top: list[ContributionOut]


class ModelRef(Out):
    name: str
    version: str


class FeatureInfo(Out):
    ts: AwareDatetime = Field(description="Time of the feature row scored (UTC).")
    age_seconds: float
    max_age_seconds: float
    stale: bool = Field(description="True when the row is older than the profile's features.max_age.")


class PredictionOut(Out):
    prediction_id: str
    fleet: str
    device_type: str
    device_id: str
    prediction_type: str
    model: ModelRef
    label: str = Field(description="Failure: the alerted component with the highest probability, or `none`. "
                                   "Anomaly: `anomalous` or `normal`.")
    probabilities: dict[str, float] = Field(description="Failure within the horizon, per component (empty for anomaly).")
    alerts: list[str] = Field(description="Components whose probability reached the model's threshold.")
    anomaly_score: float | None = Field(None, description="Anomaly model only: higher is more unusual (0..1, 0.5 is the cut).")
    features: FeatureInfo
    explanation: ExplanationOut


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_type: DeviceType
    device_id: DeviceId
    prediction_type: PredictionType


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, max_length=BATCH_MAX)


class BatchError(Out):
    index: int
    device_id: str
    status: int
    detail: str


class BatchOut(Out):
    predictions: list[PredictionOut]
    errors: list[BatchError] = Field(description="Items that could not be scored (unknown device, no champion, ...).")


class FeedbackBody(FeedbackIn):
    """The feedback record of the closed-loop store."""

    outcome_component: str | None = Field(None, min_length=1, max_length=64, pattern=NO_NUL)
    comment: str | None = Field(None, max_length=4000, pattern=NO_NUL)


class FeedbackCreated(Out):
    id: int
    prediction_id: str


class ServingState(Out):
    champion: str | None = Field(description="Version this process serves as champion.")
    challenger: str | None = Field(description="Version this process scores in shadow.")


class ModelSummaryOut(Out):
    name: str
    champion: str | None
    challenger: str | None
    latest_version: str | None
    versions: int
    serving: ServingState | None = Field(description="Null for a model no fleet profile serves.")


class VersionOut(Out):
    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None
    metrics: dict[str, float | None]
    created_at: AwareDatetime


class ModelDetailOut(Out):
    name: str
    fleet: str | None
    prediction_type: str | None
    champion: str | None
    challenger: str | None
    versions: list[VersionOut]
    serving: ServingState | None


class DecisionOut(Out):
    id: int
    created_at: AwareDatetime
    fleet: str
    model_name: str | None
    action: str
    from_version: str | None
    to_version: str | None
    reason: str
    actor: str
    run_id: str | None
    details: dict[str, Any] | None


class HistoryOut(Out):
    name: str
    decisions: list[DecisionOut]


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=1000, pattern=NO_NUL, description="Why; kept in the decision log.")


class ComponentComparison(Out):
    champion_mean: float
    challenger_mean: float
    mean_abs_difference: float
    champion_alerts: int = Field(description="Predictions the champion labelled with this component (or anomalous).")
    challenger_alerts: int = Field(description="The same for the challenger.")


class ShadowOut(Out):
    model: str
    day: date
    predictions: int = Field(description="Online predictions of this model on the day (UTC).")
    shadowed: int = Field(description="Of those, scored by a challenger too.")
    champion_versions: dict[str, int]
    challenger_versions: dict[str, int]
    label_agreement: float | None = Field(description="Share of shadowed predictions where both gave the same label.")
    components: dict[str, ComponentComparison]
    anomaly_score: ComponentComparison | None


class HealthOut(Out):
    status: str


class ModelStatus(Out):
    model: str
    alias: str
    loaded_version: str | None
    registry_version: str | None
    error: str | None


class ReadyOut(Out):
    ready: bool
    store: bool
    champions_loaded: int
    detail: str
    models: list[ModelStatus]
