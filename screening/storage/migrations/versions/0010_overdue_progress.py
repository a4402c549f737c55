"""How far the overdue scan has got, kept across worker restarts.

A webhook worker that starts again reads only the urgent screenings that became due since
the last complete scan of any worker (less its rescan margin), instead of every overdue
screening still unreviewed. One row per set of urgent outcomes: a changed set starts over.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``overdue_progress``."""
    op.create_table(
        "overdue_progress",
        sa.Column("outcomes", sa.String(64), nullable=False),
        # Written as the service writes every time: UTC (naive on SQLite).
        sa.Column("covered_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("outcomes", name="pk_overdue_progress"),
    )


def downgrade() -> None:
    """Drop what this migration created."""
    op.drop_table("overdue_progress")
