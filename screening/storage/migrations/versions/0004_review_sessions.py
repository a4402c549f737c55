"""Server-side sessions of the review pages, so signing out really ends one.

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

# The column types as this revision wrote them, not imported from the live code: a
# migration must keep building the same schema whatever the code beside it becomes.
# (The service writes timestamps in UTC, naive on SQLite, and reads them back aware.)
UTCDateTime = functools.partial(sa.DateTime, timezone=True)


def upgrade() -> None:
    """Create the review_sessions table and its indexes."""
    op.create_table(
        "review_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("key_name", sa.String(64), nullable=False),
        sa.Column("key_check", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_review_sessions"),
    )
    op.create_index("ix_review_sessions_key_name", "review_sessions", ["key_name"])
    op.create_index("ix_review_sessions_expires_at", "review_sessions", ["expires_at"])


def downgrade() -> None:
    """Drop the review_sessions table."""
    op.drop_table("review_sessions")
