"""An index for the clinician list filtered by ruleset (and version), newest first.

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


def upgrade() -> None:
    """Index ``screenings`` on ruleset id, ruleset version and creation time."""
    op.create_index(_NAME, "screenings", ["ruleset_id", "ruleset_version", "created_at"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index(_NAME, table_name="screenings")
