"""People as callers (identity-v1.md): review sessions of people signed in through the
hospital's identity provider, and who made each review.

A review session is a key's (``via`` ``token``: its key name and check) or a person's
(``oidc`` or ``smart``: their id, display name and the provider's session id, which a
back-channel logout names). A review keeps ``by`` (the display name, now up to 255
characters) and gains ``by_id`` (``oidc:<sub>``, ``smart:<sub>``, ``key:<name>``,
``oauth:<client_id>``); reviews made before this revision have none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the people's columns to review_sessions and by_id to reviews."""
    with op.batch_alter_table("review_sessions") as table:
        table.alter_column("key_name", existing_type=sa.String(64), nullable=True)
        table.alter_column("key_check", existing_type=sa.String(64), nullable=True)
        table.add_column(sa.Column("via", sa.String(16), nullable=False, server_default="token"))
        table.add_column(sa.Column("person_id", sa.String(300), nullable=True))
        table.add_column(sa.Column("display_name", sa.String(255), nullable=True))
        table.add_column(sa.Column("sid", sa.String(255), nullable=True))
    op.create_index("ix_review_sessions_person_id", "review_sessions", ["person_id"])
    op.create_index("ix_review_sessions_sid", "review_sessions", ["sid"])
    with op.batch_alter_table("reviews") as table:
        table.alter_column("by", existing_type=sa.String(64), type_=sa.String(255))
        table.add_column(sa.Column("by_id", sa.String(300), nullable=True))


def downgrade() -> None:
    """Drop what this revision added (people's sessions go with it)."""
    op.execute("DELETE FROM review_sessions WHERE key_name IS NULL")
    op.drop_index("ix_review_sessions_sid", "review_sessions")
    op.drop_index("ix_review_sessions_person_id", "review_sessions")
    with op.batch_alter_table("review_sessions") as table:
        table.drop_column("sid")
        table.drop_column("display_name")
        table.drop_column("person_id")
        table.drop_column("via")
        table.alter_column("key_check", existing_type=sa.String(64), nullable=False)
        table.alter_column("key_name", existing_type=sa.String(64), nullable=False)
    with op.batch_alter_table("reviews") as table:
        table.drop_column("by_id")
        table.alter_column("by", existing_type=sa.String(255), type_=sa.String(64))
