"""An index on decisions.run_id: a run's gate verdicts are read by run, not by scanning the whole log.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_decisions_run_id", "decisions", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_decisions_run_id", "decisions")
