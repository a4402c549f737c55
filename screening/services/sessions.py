"""Sign-in sessions of the review pages, kept in the service's database.

The browser's cookie carries only a random token; the database keeps its SHA-256
with the key it belongs to, when it started and when it was last used. Signing
out deletes the row, so a copy of the cookie taken before is worth nothing after.
A session also ends after a stretch without use (idle) and, however busy, at an
absolute end after sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from screening.services.identity import Person
from screening.storage.store import Store


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A session that is still live: a key's (its name and its check of that key) or a
    person's (their id, display name and the provider's session id)."""

    via: str
    key_name: str | None = None
    key_check: str | None = None
    person_id: str | None = None
    display_name: str | None = None
    sid: str | None = None

    @property
    def person(self) -> Person | None:
        """The person a person's session is for (a clinician: roles are read at sign-in)."""
        if self.person_id is None:
            return None
        return Person(
            self.person_id, "clinician", self.display_name or self.person_id, self.via, self.sid
        )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionService:
    """Starts, resumes and ends review sessions under one idle time and one lifetime."""

    def __init__(self, store: Store, *, idle: timedelta, lifetime: timedelta) -> None:
        self.store = store
        self.idle = idle
        self.lifetime = lifetime

    def start(self, key_name: str, key_check: str) -> str:
        """Start a session for a key; return the token for the cookie (stored only hashed).

        ``key_check`` is what the caller will compare on every later request to tell
        that the key still has the token (and the server the secret) it had here.
        """
        token = secrets.token_urlsafe(32)
        who = {"via": "token", "key_name": key_name, "key_check": key_check}
        self.store.sessions.start(_token_hash(token), who, self.lifetime, self.idle)
        return token

    def start_person(self, person: Person) -> str:
        """Start a session for a person signed in through the identity provider; return the
        token for the cookie (stored only hashed)."""
        token = secrets.token_urlsafe(32)
        who = {
            "via": person.via,
            "person_id": person.name,
            "display_name": person.display_name,
            "sid": person.sid,
        }
        self.store.sessions.start(_token_hash(token), who, self.lifetime, self.idle)
        return token

    def first_logout(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Whether a logout token's ``jti`` is seen for the first time (kept until it
        expires, in the table of token ids the CDS service keeps too)."""
        return self.store.cds.remember_token_id(f"logout:{issuer}", jti, expires_at)

    def end_people(self, *, sid: str | None, person_id: str | None) -> int:
        """End every session of a provider session id (or a person); how many ended."""
        return self.store.sessions.end_people(sid=sid, person_id=person_id)

    def resume(self, token: str) -> LiveSession | None:
        """The live session of ``token``, marked as used now; None once it has ended."""
        found = self.store.sessions.resume(_token_hash(token), self.idle)
        return None if found is None else LiveSession(*found)

    def end(self, token: str) -> None:
        """End the session of ``token`` for good (nothing happens if there is none)."""
        self.store.sessions.end(_token_hash(token))
