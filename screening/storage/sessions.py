"""The review pages' sign-in sessions: live until their absolute end and while used."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

from screening.storage.tables import review_sessions

if TYPE_CHECKING:
    # The store holds this repository; no import at run time.
    from screening.storage.store import Store


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SessionRepository:
    """Sign-in sessions, by the hash of their token."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(
        self, token_hash: str, key_name: str, key_check: str, lifetime: timedelta, idle: timedelta
    ) -> None:
        """Store a new sign-in session that ends ``lifetime`` from now at the latest.

        Sessions that have ended by time (past their end, or unused for ``idle``) are
        deleted here too, so the table holds only live sessions and a few stale ones.
        """
        now = _utcnow()
        table = review_sessions
        with self.store.transaction() as conn:
            conn.execute(
                table.delete().where(
                    (table.c.expires_at <= now) | (table.c.last_seen_at <= now - idle)
                )
            )
            conn.execute(
                table.insert().values(
                    token_hash=token_hash,
                    key_name=key_name,
                    key_check=key_check,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + lifetime,
                )
            )

    def resume(self, token_hash: str, idle: timedelta) -> tuple[str, str] | None:
        """Mark a live session as used now; return its key name and check, or None.

        A session is live until its absolute end and while it was used within ``idle``.
        One statement both checks and renews it, so two requests can't race past an end.
        """
        now = _utcnow()
        table = review_sessions
        with self.store.transaction() as conn:
            row = conn.execute(
                table.update()
                .where(
                    (table.c.token_hash == token_hash)
                    & (table.c.expires_at > now)
                    & (table.c.last_seen_at > now - idle)
                )
                .values(last_seen_at=now)
                .returning(table.c.key_name, table.c.key_check)
            ).first()
        return None if row is None else (row.key_name, row.key_check)

    def end(self, token_hash: str) -> None:
        """Forget a session (signing out, or a key that no longer matches)."""
        with self.store.transaction() as conn:
            conn.execute(review_sessions.delete().where(review_sessions.c.token_hash == token_hash))
