"""API keys: ``SCREENING_API_KEYS`` entries, token hashes and finding the key of a token.

The configuration holds only ``name:role:sha256hex`` entries, never a token.
A presented token is hashed and compared with every entry in constant time, so
neither timing nor an early exit tells which entry, if any, came close.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

ROLES = ("portal", "clinician")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class KeyConfigError(ValueError):
    """An ``SCREENING_API_KEYS`` entry is malformed."""


class Principal(Protocol):
    """Who a request acts for, as the services see it: a name for the audit log and for
    portal isolation, a role (empty: none), and how a review names them."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def display_name(self) -> str:
        """A review's ``by``: a person's name, else the caller's name."""
        ...

    @property
    def actor_id(self) -> str:
        """A review's ``by_id``: ``key:<name>``, ``oauth:<client_id>``, ``oidc:<sub>``."""
        ...


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured caller: a name for audit, a role, and its token's hash."""

    name: str
    role: str
    digest: bytes

    @property
    def display_name(self) -> str:
        """A key is named by its name."""
        return self.name

    @property
    def actor_id(self) -> str:
        """``key:<name>``."""
        return f"key:{self.name}"


def token_digest(token: str) -> str:
    """The lowercase hex SHA-256 of a token, as ``SCREENING_API_KEYS`` stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A new random bearer token (256 bits)."""
    return secrets.token_urlsafe(32)


def parse_api_keys(value: str | Iterable[str]) -> tuple[ApiKey, ...]:
    """Parse ``name:role:sha256hex`` entries (a comma-separated string or a list).

    Raises ``KeyConfigError`` naming the first bad entry by position and name.
    """
    entries = value.split(",") if isinstance(value, str) else list(value)
    keys: list[ApiKey] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for position, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        label = f"SCREENING_API_KEYS entry {position}"
        if len(parts) != 3:
            raise KeyConfigError(f"{label}: expected name:role:sha256hex")
        name, role, digest = parts
        label += f" ('{name}')" if _NAME.match(name) else ""
        if not _NAME.match(name):
            raise KeyConfigError(f"{label}: the name must be 1-64 of A-Z a-z 0-9 . _ -")
        if role not in ROLES:
            raise KeyConfigError(f"{label}: the role must be one of {', '.join(ROLES)}")
        if not _DIGEST.match(digest):
            raise KeyConfigError(f"{label}: the hash must be 64 lowercase hex digits (SHA-256)")
        if name in names:
            raise KeyConfigError(f"{label}: the name is used twice")
        raw_digest = bytes.fromhex(digest)
        if raw_digest in digests:
            raise KeyConfigError(f"{label}: the same token hash is configured twice")
        names.add(name)
        digests.add(raw_digest)
        keys.append(ApiKey(name, role, raw_digest))
    return tuple(keys)


class Authenticator:
    """Finds the configured key for a presented token."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)

    def identify(self, token: str) -> ApiKey | None:
        """The key whose hash matches ``token``, comparing against every key."""
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(presented, key.digest):
                found = key
        return found
