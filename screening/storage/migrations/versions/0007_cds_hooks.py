"""CDS Hooks: the JWT ids seen (replay), the cards shown and the feedback on them, and
a digest of each screening's answers (to link a card to the screening it describes).

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import functools
import hashlib
import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

# The column types as this revision wrote them, not imported from the live code: a
# migration must keep building the same schema whatever the code beside it becomes.
# (The service writes timestamps in UTC, naive on SQLite, and reads them back aware.)
UTCDateTime = functools.partial(sa.DateTime, timezone=True)
JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def json_digest(value: object) -> str:
    """The answers' digest as the service wrote it when this revision was made: SHA-256 of
    canonical JSON (sorted keys, no spaces, ASCII)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def upgrade() -> None:
    """Create ``cds_token_ids``, ``cds_cards`` and ``cds_feedback``; add and fill
    ``screenings.answers_sha256``; let ``audit_log.actor`` hold an issuer."""
    op.create_table(
        "cds_token_ids",
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name="pk_cds_token_ids"),
    )
    op.create_index("ix_cds_token_ids_expires_at", "cds_token_ids", ["expires_at"])
    op.create_table(
        "cds_cards",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("shown_at", UTCDateTime(), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("hook_instance", sa.String(255), nullable=False),
        sa.Column("patient_id", sa.String(255), nullable=False),
        sa.Column("screening_id", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("summary", sa.String(140), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_cds_cards"),
    )
    op.create_index("ix_cds_cards_screening_id", "cds_cards", ["screening_id"])
    op.create_index("ix_cds_cards_shown_at", "cds_cards", ["shown_at"])
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.Column("screening_id", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_at", UTCDateTime(), nullable=False),
        sa.Column("accepted_suggestions", JSONDocument, nullable=False),
        sa.Column("override_reason", JSONDocument, nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cds_feedback"),
    )
    op.create_index("ix_cds_feedback_screening_id", "cds_feedback", ["screening_id"])
    op.create_index("ix_cds_feedback_received_at", "cds_feedback", ["received_at"])
    op.add_column("screenings", sa.Column("answers_sha256", sa.String(64), nullable=True))
    screenings = sa.table(
        "screenings",
        sa.column("id", sa.String(32)),
        sa.column("answers", JSONDocument),
        sa.column("answers_sha256", sa.String(64)),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(screenings.c.id, screenings.c.answers)).all()
    for row in rows:
        conn.execute(
            screenings.update()
            .where(screenings.c.id == row.id)
            .values(answers_sha256=json_digest(row.answers))
        )
    op.create_index("ix_screenings_answers_sha256", "screenings", ["answers_sha256"])
    # A CDS client's issuer is the actor of its cards and feedback in the audit log.
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("actor", existing_type=sa.String(64), type_=sa.String(255))


def downgrade() -> None:
    """Drop what this migration created."""
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("actor", existing_type=sa.String(255), type_=sa.String(64))
    op.drop_index("ix_screenings_answers_sha256", table_name="screenings")
    with op.batch_alter_table("screenings") as batch:
        batch.drop_column("answers_sha256")
    op.drop_table("cds_feedback")
    op.drop_table("cds_cards")
    op.drop_table("cds_token_ids")
