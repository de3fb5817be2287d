"""Baseline: predictions, feedback, idempotency keys and decisions as stores made before migrations had them.

Stores made before migrations (by SQLAlchemy's create_all) hold some of these tables already, depending on their
age: a table that exists is kept as it is, with its rows, and only the missing ones are created.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "predictions" not in existing:
        _predictions()
    if "feedback" not in existing:
        _feedback()
    if "idempotency_keys" not in existing:
        _idempotency_keys()
    if "decisions" not in existing:
        _decisions()


def _predictions() -> None:
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("fleet", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.DateTime, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(16), nullable=False),
        sa.Column("predicted_component", sa.String(64), nullable=False),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("shadow", sa.JSON(none_as_null=True), nullable=True),
        sa.CheckConstraint("source IN ('batch', 'api')", name="ck_predictions_source"),
    )
    op.create_index("ix_predictions_fleet_ts", "predictions", ["fleet", "ts"])


def _feedback() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("outcome_component", sa.String(64), nullable=True),
        sa.Column("outcome_at", sa.DateTime, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("type IN ('false_positive', 'false_negative', 'correct', 'unclear')", name="ck_feedback_type"),
        sa.CheckConstraint("source IN ('technician', 'app', 'system')", name="ck_feedback_source"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_feedback_rating"),
    )
    op.create_index("ix_feedback_prediction_id", "feedback", ["prediction_id"])
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])


def _idempotency_keys() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(128), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("feedback_id", sa.Integer, sa.ForeignKey("feedback.id"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def _decisions() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("fleet", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_version", sa.String(16), nullable=True),
        sa.Column("to_version", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("details", sa.JSON, nullable=True),
    )
    op.create_index("ix_decisions_fleet", "decisions", ["fleet"])
    op.create_index("ix_decisions_model_name", "decisions", ["model_name"])


def downgrade() -> None:
    for table in ("idempotency_keys", "feedback", "decisions", "predictions"):  # referencing tables first
        op.drop_table(table)
