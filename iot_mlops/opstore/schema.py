"""The operational store's tables, one metadata: what Alembic's migrations build, revision by revision."""

from __future__ import annotations

from typing import Literal, get_args

import sqlalchemy as sa

FeedbackType = Literal["false_positive", "false_negative", "correct", "unclear"]
FeedbackSource = Literal["technician", "app", "system"]
FEEDBACK_TYPES, FEEDBACK_SOURCES = get_args(FeedbackType), get_args(FeedbackSource)
PREDICTION_SOURCES = ("batch", "api")
ACTIONS = {"promoted", "rejected", "rollback", "retrain_triggered", "retrain_skipped"}

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions", metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),
    sa.Column("fleet", sa.String(64), nullable=False),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("ts", sa.DateTime, nullable=False),  # feature timestamp, UTC
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(16), nullable=False),
    sa.Column("predicted_component", sa.String(64), nullable=False),
    sa.Column("probabilities", sa.JSON, nullable=False),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("shadow", sa.JSON(none_as_null=True), nullable=True),  # a challenger's output on the same request
    sa.CheckConstraint(f"source IN {PREDICTION_SOURCES}", name="ck_predictions_source"),
    sa.Index("ix_predictions_fleet_ts", "fleet", "ts"),
)
feedback = sa.Table(
    "feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"), nullable=False, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("outcome_component", sa.String(64), nullable=True),
    sa.Column("outcome_at", sa.DateTime, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    sa.CheckConstraint(f"type IN {FEEDBACK_TYPES}", name="ck_feedback_type"),
    sa.CheckConstraint(f"source IN {FEEDBACK_SOURCES}", name="ck_feedback_source"),
    sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_feedback_rating"),
)
idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("principal", sa.String(128), primary_key=True),  # keys are scoped per API key (its name)
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # SHA-256 of the request the key answered
    sa.Column("feedback_id", sa.Integer, sa.ForeignKey("feedback.id"), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("fleet", sa.String(64), nullable=False, index=True),
    sa.Column("model_name", sa.String(128), nullable=True, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("from_version", sa.String(16), nullable=True),
    sa.Column("to_version", sa.String(16), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True, index=True),  # revision 0002: a gate's run finds its decisions
    sa.Column("details", sa.JSON, nullable=True),
)
