"""The audit log: who did what to which screening (ids and names, never answers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from screening.records import AuditEntry
from screening.storage.tables import audit_log

if TYPE_CHECKING:
    # The store holds this repository; no import at run time.
    from screening.storage.store import Store


def write_audit(
    store: Store,
    conn: Connection,
    actor: str,
    action: str,
    screening_ids: Sequence[str | None],
    at: datetime,
    sid: str | None = None,
) -> None:
    """Record ``action`` by ``actor`` on each screening in the open transaction ``conn``
    (one entry without a screening when there are none), with the provider's ``sid``."""
    ids: Sequence[str | None] = screening_ids or [None]
    store.insert_rows(
        conn,
        audit_log,
        [{"at": at, "actor": actor, "action": action, "screening_id": i, "sid": sid} for i in ids],
    )


class AuditRepository:
    """The audit trail."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(
        self, actor: str, action: str, screening_ids: Sequence[str], sid: str | None = None
    ) -> None:
        """Record that ``actor`` did ``action`` to each screening (ids and names only), and
        the identity provider's session if known."""

        def record(conn: Connection) -> None:
            write_audit(self.store, conn, actor, action, screening_ids, datetime.now(UTC), sid)

        self.store.grouped.run(record)

    def entries(self, screening_id: str | None = None) -> list[AuditEntry]:
        """The audit trail, oldest first (optionally for one screening)."""
        query = sa.select(audit_log).order_by(audit_log.c.id)
        if screening_id is not None:
            query = query.where(audit_log.c.screening_id == screening_id)
        with self.store.engine.connect() as conn:
            return [
                {
                    "id": row.id,
                    "at": row.at,
                    "actor": row.actor,
                    "action": row.action,
                    "screening_id": row.screening_id,
                    "sid": row.sid,
                }
                for row in conn.execute(query)
            ]
