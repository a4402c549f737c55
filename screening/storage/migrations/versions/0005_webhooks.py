"""The webhook outbox (one row per event and endpoint) and the overdue reviews noticed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The column types as this revision wrote them, not imported from the live code: a
# migration must keep building the same schema whatever the code beside it becomes.
# (The service writes timestamps in UTC, naive on SQLite, and reads them back aware.)
UTCDateTime = functools.partial(sa.DateTime, timezone=True)


def upgrade() -> None:
    """Create ``webhook_deliveries`` and ``overdue_reviews`` with their indexes."""
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("screening_id", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("scheduled_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease", sa.String(32), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_result", sa.String(64), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
    )
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_table(
        "overdue_reviews",
        sa.Column("screening_id", sa.String(32), nullable=False),
        sa.Column("noticed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["screening_id"],
            ["screenings.id"],
            name="fk_overdue_reviews_screening_id_screenings",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("screening_id", name="pk_overdue_reviews"),
    )


def downgrade() -> None:
    """Drop what this migration created."""
    op.drop_table("overdue_reviews")
    op.drop_table("webhook_deliveries")
