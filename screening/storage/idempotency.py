"""Idempotency records: a key claimed by an insert a primary key makes unique (never a
check followed by an insert, so racing requests cannot both win), finished with the
screening it stored, replayed for 24 hours."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from screening.storage.tables import idempotency_records

if TYPE_CHECKING:
    # The store holds this repository; no import at run time.
    from screening.storage.store import Store

IDEMPOTENCY_TTL = timedelta(hours=24)
#: An in-progress idempotency record older than this was left by a request that
#: died mid-way (a killed worker); a retry may take it over.
IDEMPOTENCY_STALE_AFTER = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming an Idempotency-Key."""

    state: Literal["new", "replay", "in_flight", "mismatch"]
    status_code: int | None = None
    response_body: str | None = None
    #: For a "replay": the screening the first request stored.
    screening_id: str | None = None
    #: For a "new" claim: the token that proves this request holds it.
    token: str | None = None


class ClaimLost(Exception):
    """Another request took over this request's stale Idempotency-Key claim."""


FINISH_IDEMPOTENCY = idempotency_records.update().where(
    (idempotency_records.c.key_name == sa.bindparam("k_name"))
    & (idempotency_records.c.idempotency_key == sa.bindparam("k_key"))
    & (idempotency_records.c.claim == sa.bindparam("k_claim"))
    & (idempotency_records.c.state == "in_progress")
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IdempotencyRepository:
    """Claims of Idempotency-Keys."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def claim(self, key_name: str, key: str, request_hash: str) -> Claim:
        """Claim ``key`` for a request, or say what the first request with it did."""
        now = _utcnow()
        token = secrets.token_hex(16)
        table = idempotency_records
        mine = (table.c.key_name == key_name) & (table.c.idempotency_key == key)

        def claim(conn: Connection) -> Claim:
            # After 24 hours a key may be used afresh.
            conn.execute(table.delete().where(mine & (table.c.expires_at <= now)))
            # RETURNING says whether the row went in: psycopg reports no rowcount here.
            inserted = conn.execute(
                self.store.insert_statement(table)
                .values(
                    key_name=key_name,
                    idempotency_key=key,
                    request_hash=request_hash,
                    state="in_progress",
                    claim=token,
                    locked_at=now,
                    expires_at=now + IDEMPOTENCY_TTL,
                )
                .on_conflict_do_nothing()
                .returning(table.c.key_name)
            ).first()
            if inserted is not None:
                return Claim("new", token=token)
            row = conn.execute(sa.select(table).where(mine)).one()
            if row.request_hash != request_hash:
                return Claim("mismatch")
            if row.state == "done":
                return Claim("replay", row.status_code, row.response_body, row.screening_id)
            if row.locked_at <= now - IDEMPOTENCY_STALE_AFTER:
                # The holder died mid-way (or stalls): take the claim over. The old
                # holder's token no longer matches, so it can neither finish nor release.
                taken = conn.execute(
                    table.update()
                    .where(mine & (table.c.state == "in_progress"))
                    .where(table.c.claim == row.claim)
                    .values(claim=token, locked_at=now)
                ).rowcount
                if taken == 1:
                    return Claim("new", token=token)
            return Claim("in_flight")

        return self.store.grouped.run(claim)

    def release(self, key_name: str, key: str, token: str) -> None:
        """Forget this request's in-progress claim after it failed, so a retry runs afresh."""
        table = idempotency_records

        def release(conn: Connection) -> None:
            conn.execute(
                table.delete().where(
                    (table.c.key_name == key_name)
                    & (table.c.idempotency_key == key)
                    & (table.c.claim == token)
                    & (table.c.state == "in_progress")
                )
            )

        self.store.grouped.run(release)
