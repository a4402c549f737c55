"""Indexes for the triage worklist and every list filter, at any table size.

``(review_status, outcome, created_at, id)`` serves triage's first bands (pending
screenings of the urgent and the see-own-doctor outcomes, oldest first), the overdue gauge
and scan, and a pending list of one outcome; ``(ruleset_id, created_at, id)`` the list of
one ruleset in either order (0008's index has the version between). The indexes on
outcome, on review status and on ruleset version gain ``id``, the lists' second order key:
a page of one filter is then read straight from its index, with nothing left to sort.
On PostgreSQL each is built CONCURRENTLY, in an autocommit block, as in 0008, before the
index it replaces is dropped: the service stays up and keeps storing screenings.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_screenings_review_status_outcome_created_at_id": [
        "review_status",
        "outcome",
        "created_at",
        "id",
    ],
    "ix_screenings_ruleset_id_created_at_id": ["ruleset_id", "created_at", "id"],
    "ix_screenings_outcome_created_at_id": ["outcome", "created_at", "id"],
    "ix_screenings_review_status_created_at_id": ["review_status", "created_at", "id"],
    "ix_screenings_ruleset_id_ruleset_version_created_at_id": [
        "ruleset_id",
        "ruleset_version",
        "created_at",
        "id",
    ],
}
#: The indexes the last three replace, and their columns (for going down again).
_REPLACED = {
    "ix_screenings_outcome_created_at": ["outcome", "created_at"],
    "ix_screenings_review_status_created_at": ["review_status", "created_at"],
    "ix_screenings_ruleset_id_ruleset_version_created_at": [
        "ruleset_id",
        "ruleset_version",
        "created_at",
    ],
}


def _on_postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    """Build the new indexes, then drop the two they replace."""
    if not _on_postgresql():
        for name, columns in _INDEXES.items():
            op.create_index(name, "screenings", columns)
        for name in _REPLACED:
            op.drop_index(name, table_name="screenings")
        return
    with op.get_context().autocommit_block():
        for name, columns in _INDEXES.items():
            # A concurrent build that failed leaves an invalid index behind: build afresh.
            op.drop_index(
                name, table_name="screenings", postgresql_concurrently=True, if_exists=True
            )
            op.create_index(name, "screenings", columns, postgresql_concurrently=True)
        for name in _REPLACED:
            op.drop_index(
                name, table_name="screenings", postgresql_concurrently=True, if_exists=True
            )


def downgrade() -> None:
    """Build the two replaced indexes again, then drop the new ones."""
    if not _on_postgresql():
        for name, columns in _REPLACED.items():
            op.create_index(name, "screenings", columns)
        for name in _INDEXES:
            op.drop_index(name, table_name="screenings")
        return
    with op.get_context().autocommit_block():
        for name, columns in _REPLACED.items():
            op.create_index(name, "screenings", columns, postgresql_concurrently=True)
        for name in _INDEXES:
            op.drop_index(name, table_name="screenings", postgresql_concurrently=True)
