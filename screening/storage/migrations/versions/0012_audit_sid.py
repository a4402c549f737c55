"""The identity provider's session id on the audit entries of signing in and out.

A sign-in through the provider, its sign-out and a back-channel logout name the provider's
session (``sid``) where it is known, so the hospital can match them with its own logs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``audit_log.sid``."""
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("sid", sa.String(255), nullable=True))


def downgrade() -> None:
    """Drop ``audit_log.sid``."""
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("sid")
