"""The review pages' sign-in sessions: live until their absolute end and while used."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

from screening.storage.database import AnyRow
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
        self,
        token_hash: str,
        who: Mapping[str, str | None],
        lifetime: timedelta,
        idle: timedelta,
    ) -> None:
        """Store a new sign-in session that ends ``lifetime`` from now at the latest.

        ``who`` holds the session's ``via`` and either ``key_name`` and ``key_check`` (a
        key) or ``person_id``, ``display_name`` and ``sid`` (a person). Sessions that have
        ended by time (past their end, or unused for ``idle``) are deleted here too, so the
        table holds only live sessions and a few stale ones.
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
                    **who,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + lifetime,
                )
            )

    def resume(self, token_hash: str, idle: timedelta) -> AnyRow | None:
        """Mark a live session as used now; return who it is for (``via``, ``key_name``,
        ``key_check``, ``person_id``, ``display_name``, ``sid``), or None.

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
                .returning(
                    table.c.via,
                    table.c.key_name,
                    table.c.key_check,
                    table.c.person_id,
                    table.c.display_name,
                    table.c.sid,
                )
            ).first()
        return row

    def end_people(self, *, sid: str | None, person_id: str | None) -> int:
        """End every session of a provider session id (or, without one, of a person) at
        once; return how many."""
        table = review_sessions
        where = table.c.sid == sid if sid is not None else table.c.person_id == person_id
        # Only sessions signed in through this provider: an EHR's sids are its own.
        where = where & (table.c.via == "oidc")
        with self.store.transaction() as conn:
            return int(conn.execute(table.delete().where(where)).rowcount)

    def end(self, token_hash: str) -> None:
        """Forget a session (signing out, or a key that no longer matches)."""
        with self.store.transaction() as conn:
            conn.execute(review_sessions.delete().where(review_sessions.c.token_hash == token_hash))
