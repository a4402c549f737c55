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
from datetime import timedelta

from screening.storage.store import Store


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A session that is still live: whose key it is, and its check of that key."""

    key_name: str
    key_check: str


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
        self.store.sessions.start(_token_hash(token), key_name, key_check, self.lifetime, self.idle)
        return token

    def resume(self, token: str) -> LiveSession | None:
        """The live session of ``token``, marked as used now; None once it has ended."""
        found = self.store.sessions.resume(_token_hash(token), self.idle)
        return None if found is None else LiveSession(*found)

    def end(self, token: str) -> None:
        """End the session of ``token`` for good (nothing happens if there is none)."""
        self.store.sessions.end(_token_hash(token))
