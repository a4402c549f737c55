"""CDS Hooks: the ids of the EHR tokens accepted (a replay fails everywhere), the cards
shown and the feedback on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from screening.records import CardFeedback
from screening.records import CardFeedbackEntry
from screening.records import ShownCard
from screening.storage.audit import write_audit
from screening.storage.tables import cds_cards
from screening.storage.tables import cds_feedback
from screening.storage.tables import cds_token_ids

if TYPE_CHECKING:
    # The store holds this repository; no import at run time.
    from screening.storage.store import Store


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CdsRepository:
    """Token ids, cards and feedback."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def remember_token_id(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a token's ``jti`` until ``expires_at``; False when it was seen before.

        The primary key decides, so two workers (or instances) given the same token at
        once can't both accept it. Ids whose tokens have expired are deleted first.
        """
        now = _utcnow()
        table = cds_token_ids

        def remember(conn: Connection) -> bool:
            conn.execute(table.delete().where(table.c.expires_at <= now))
            inserted = conn.execute(
                self.store.insert_statement(table)
                .values(issuer=issuer, jti=jti, expires_at=expires_at)
                .on_conflict_do_nothing()
                .returning(table.c.jti)
            ).first()
            return inserted is not None

        # Written on every hook call: committed with the other requests' writes.
        return self.store.grouped.run(remember)

    def record_card(self, row: ShownCard) -> None:
        """Store a card as shown; audit it against its screening when it has one."""

        def record(conn: Connection) -> None:
            conn.execute(cds_cards.insert(), row)
            if row["screening_id"] is not None:
                write_audit(
                    self.store,
                    conn,
                    row["caller"],
                    "cds_card",
                    [row["screening_id"]],
                    row["shown_at"],
                )

        self.store.grouped.run(record)

    def record_feedback(self, caller: str, entries: Sequence[CardFeedbackEntry]) -> int:
        """Store feedback entries (each joined to its card, if shown) and audit them;
        return how many named a card never shown."""
        now = _utcnow()
        uuids = {entry["card_uuid"] for entry in entries}

        def record(conn: Connection) -> list[dict[str, object]]:
            shown = {
                row.uuid: row.screening_id
                for row in conn.execute(
                    sa.select(cds_cards.c.uuid, cds_cards.c.screening_id).where(
                        cds_cards.c.uuid.in_(uuids)
                    )
                )
            }
            linked = [shown.get(entry["card_uuid"]) for entry in entries]
            rows = [
                {
                    **entry,
                    "received_at": now,
                    "caller": caller,
                    "known": entry["card_uuid"] in shown,
                    "screening_id": screening_id,
                }
                for entry, screening_id in zip(entries, linked, strict=True)
            ]
            conn.execute(cds_feedback.insert(), rows)
            write_audit(self.store, conn, caller, "cds_feedback", linked, now)
            return rows

        # Committed with the other requests' writes, like the cards it answers.
        rows = self.store.grouped.run(record)
        return sum(1 for row in rows if not row["known"])

    def card_feedback(self, screening_id: str) -> list[CardFeedback]:
        """The feedback on the cards that described a screening, oldest first."""
        f = cds_feedback.c
        query = (
            sa.select(f.caller, f.outcome, f.outcome_at, f.override_reason, f.user_comment)
            .where(cds_feedback.c.screening_id == screening_id)
            .order_by(cds_feedback.c.id)
        )
        with self.store.engine.connect() as conn:
            return [CardFeedback(*row) for row in conn.execute(query)]
