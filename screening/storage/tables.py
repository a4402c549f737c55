"""The tables, as SQLAlchemy Core ``Table``s in one ``MetaData``: what the stores query
and what Alembic compares the migrations with (``migrations/env.py``).

SQLite (the embedded default) and PostgreSQL (production) hold the same tables; a JSON
document is JSONB on PostgreSQL, and a timestamp is stored in UTC and read back aware.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

screenings = sa.Table(
    "screenings",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("patient_ref", sa.String(64)),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("questionnaire_id", sa.String(64), nullable=False),
    sa.Column("questionnaire_version", sa.String(32), nullable=False),
    sa.Column("questionnaire_sha256", sa.String(64), nullable=False),
    sa.Column("ruleset_id", sa.String(64), nullable=False),
    sa.Column("ruleset_version", sa.String(32), nullable=False),
    sa.Column("ruleset_sha256", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("review_status", sa.String(16), nullable=False),
    sa.Column("answers", JSONDocument, nullable=False),
    # outcome, decided_by, matched_rules, summary and trace, as computed at
    # submission: a stored result is never recomputed.
    sa.Column("result", JSONDocument, nullable=False),
    # The document the answers came in, when it was not native JSON (FHIR).
    sa.Column("source", JSONDocument),
    # ``json_digest(answers)``: finds the stored screening a CDS card describes.
    sa.Column("answers_sha256", sa.String(64)),
    # Each list order is (created_at, id): an index that ends with both serves a page of
    # its filter by reading only that page's rows.
    sa.Index(None, "created_at", "id"),
    sa.Index(None, "outcome", "created_at", "id"),
    sa.Index(None, "review_status", "created_at", "id"),
    sa.Index(None, "patient_ref"),
    sa.Index(None, "answers_sha256"),
    sa.Index(None, "ruleset_id", "ruleset_version", "created_at", "id"),
    # Triage's first bands, the overdue gauge and scan, and a pending list of one outcome.
    sa.Index(None, "review_status", "outcome", "created_at", "id"),
    # The list of one ruleset (any version), newest first or in created order.
    sa.Index(None, "ruleset_id", "created_at", "id"),
)

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "screening_id",
        sa.String(32),
        sa.ForeignKey("screenings.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("at", UTCDateTime(), nullable=False),
    # The display name of who reviewed: a person's, or a key's or client's name.
    sa.Column("by", sa.String(255), nullable=False),
    sa.Column("note", sa.Text),
    # Who, as the audit log names them: oidc:<sub>, smart:<sub>, key:<name>, oauth:<client>.
    sa.Column("by_id", sa.String(300)),
)

idempotency_records = sa.Table(
    "idempotency_records",
    metadata,
    sa.Column("key_name", sa.String(64), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    # Which request holds an in-progress claim: only its holder may finish or release it.
    sa.Column("claim", sa.String(32), nullable=False),
    sa.Column("locked_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("status_code", sa.Integer),
    sa.Column("response_body", sa.Text),
    sa.Column(
        "screening_id",
        sa.String(32),
        sa.ForeignKey("screenings.id", ondelete="CASCADE"),
        index=True,
    ),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    # key:<name>, oauth:<client_id>, oidc:<sub>, smart:<sub>, or a CDS client's issuer.
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    # No foreign key: the trail of a screening outlives the screening (purge).
    sa.Column("screening_id", sa.String(32), index=True),
    # The identity provider's session, on signing in and out through it.
    sa.Column("sid", sa.String(255)),
    sa.Index(None, "at"),
)


review_sessions = sa.Table(
    "review_sessions",
    metadata,
    # The SHA-256 of the session's token: the cookie holds the token, the table never does.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    # How the person signed in: "token" (a key), "oidc" or "smart".
    sa.Column("via", sa.String(16), nullable=False, server_default="token"),
    # A key's session: its name, and a check tying it to the key's token and the cookie
    # secret as they were at sign-in.
    sa.Column("key_name", sa.String(64), index=True),
    sa.Column("key_check", sa.String(64)),
    # A person's session: their id (oidc:<sub>, smart:<sub>), display name, and the
    # provider's session id that a back-channel logout names.
    sa.Column("person_id", sa.String(300), index=True),
    sa.Column("display_name", sa.String(255)),
    sa.Column("sid", sa.String(255), index=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    # The absolute end, however busy the session is kept.
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)


webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The Standard Webhooks message id: the same for every endpoint and every retry.
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    # No foreign key and no index of its own: each would cost every POST another page
    # written at commit. Purge deletes a screening's deliveries explicitly.
    sa.Column("screening_id", sa.String(32), nullable=False),
    # The body exactly as it is sent (and signed) on every attempt.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # When the current retry schedule began: at the event, or at a manual retry.
    sa.Column("scheduled_at", UTCDateTime(), nullable=False),
    # Due from then; while a worker holds the row, the end of its lease.
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("lease", sa.String(32)),
    sa.Column("last_attempt_at", UTCDateTime()),
    sa.Column("last_result", sa.String(64)),
    sa.Column("delivered_at", UTCDateTime()),
    sa.Index(None, "status", "next_attempt_at"),
)

#: Urgent screenings whose review is overdue and whose overdue event was recorded:
#: the primary key lets it happen once, whatever number of workers look.
overdue_reviews = sa.Table(
    "overdue_reviews",
    metadata,
    sa.Column(
        "screening_id",
        sa.String(32),
        sa.ForeignKey("screenings.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("noticed_at", UTCDateTime(), nullable=False),
)

#: How far the overdue scan has got (every urgent screening created up to ``covered_until``
#: was looked at), per set of urgent outcomes, so that a worker that starts again goes on
#: from there instead of reading every overdue screening still unreviewed.
overdue_progress = sa.Table(
    "overdue_progress",
    metadata,
    sa.Column("outcomes", sa.String(64), primary_key=True),
    sa.Column("covered_until", UTCDateTime(), nullable=False),
)


#: The ``jti`` of every EHR token accepted, until the token expires: the primary key
#: refuses a replay, whatever worker or instance it reaches.
cds_token_ids = sa.Table(
    "cds_token_ids",
    metadata,
    sa.Column("issuer", sa.String(255), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

#: Every CDS card shown, by its uuid: what it said and about which patient and screening.
cds_cards = sa.Table(
    "cds_cards",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("shown_at", UTCDateTime(), nullable=False, index=True),
    # The EHR's issuer, or the clinician key's name.
    sa.Column("caller", sa.String(255), nullable=False),
    sa.Column("hook_instance", sa.String(255), nullable=False),
    # The EHR's patient id (context.patientId): deleted with the card by purge.
    sa.Column("patient_id", sa.String(255), nullable=False),
    # No foreign key: purge deletes a screening's cards explicitly, on any database.
    sa.Column("screening_id", sa.String(32), index=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("indicator", sa.String(16), nullable=False),
    sa.Column("summary", sa.String(140), nullable=False),
)

#: CDS Hooks feedback, one row per entry; ``known`` is false for a card uuid never shown.
cds_feedback = sa.Table(
    "cds_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("caller", sa.String(255), nullable=False),
    sa.Column("card_uuid", sa.String(64), nullable=False),
    sa.Column("known", sa.Boolean, nullable=False),
    sa.Column("screening_id", sa.String(32), index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("outcome_at", UTCDateTime(), nullable=False),
    sa.Column("accepted_suggestions", JSONDocument, nullable=False),
    sa.Column("override_reason", JSONDocument),
    sa.Column("user_comment", sa.Text),
)
