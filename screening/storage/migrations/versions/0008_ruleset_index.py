"""An index for the clinician list filtered by ruleset (and version), newest first.

On PostgreSQL it is built CONCURRENTLY: a plain CREATE INDEX would hold back every new
screening for as long as the build takes on a large table, and the service stays up while
it is upgraded. That can't run in a transaction, so it runs in an autocommit block.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_NAME = "ix_screenings_ruleset_id_ruleset_version_created_at"


_COLUMNS = ["ruleset_id", "ruleset_version", "created_at"]


def _on_postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    """Index ``screenings`` on ruleset id, ruleset version and creation time."""
    if not _on_postgresql():
        op.create_index(_NAME, "screenings", _COLUMNS)
        return
    with op.get_context().autocommit_block():
        # A concurrent build that failed (or was stopped) leaves an invalid index of this
        # name behind, which PostgreSQL keeps updating but never uses: build it afresh.
        op.drop_index(_NAME, table_name="screenings", postgresql_concurrently=True, if_exists=True)
        op.create_index(_NAME, "screenings", _COLUMNS, postgresql_concurrently=True)


def downgrade() -> None:
    """Drop the index."""
    if not _on_postgresql():
        op.drop_index(_NAME, table_name="screenings")
        return
    with op.get_context().autocommit_block():
        op.drop_index(_NAME, table_name="screenings", postgresql_concurrently=True)
