"""Webhook endpoints (``SCREENING_WEBHOOKS``) and the events recorded for them.

An event becomes one outbox row per endpoint that wants it, written by the store in the
same transaction as the change that caused it (see ``storage/outbox.py``). The body is
made here, once, and sent unchanged on every attempt; ``delivery.py`` signs and sends it.
Payloads carry only what notifications-v1.md lists: never answers, summaries, notes or
tokens.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook

from screening.records import NewDelivery
from screening.records import ScreeningFacts
from screening.services.settings import http_url
from screening.services.settings import json_array
from screening.timestamps import rfc3339

CREATED = "screening.created"
REVIEWED = "screening.reviewed"
REVIEW_OVERDUE = "screening.review_overdue"
EVENTS = (CREATED, REVIEWED, REVIEW_OVERDUE)

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
_FIELDS = {"name", "url", "secret", "events", "outcomes"}
_SECRET_PREFIX = "whsec_"
#: Standard Webhooks: a symmetric secret of at least 24 random bytes (at most 64).
_SECRET_BYTES = (24, 64)


class WebhookConfigError(ValueError):
    """``SCREENING_WEBHOOKS`` or ``SCREENING_PUBLIC_URL`` can't be used."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A receiver of events, with the secret its deliveries are signed with."""

    name: str
    url: str
    signer: Webhook
    events: frozenset[str]
    #: Only screenings with these outcomes; None for all.
    outcomes: frozenset[str] | None = None

    def wants(self, event_type: str, outcome: str) -> bool:
        """Whether this endpoint subscribed to this event for this outcome."""
        return event_type in self.events and (self.outcomes is None or outcome in self.outcomes)

    def __repr__(self) -> str:
        # Never the secret, in a log or a traceback.
        return f"Endpoint(name={self.name!r}, events={sorted(self.events)!r})"


def _signer(secret: Any) -> Webhook | None:
    """A signer for a ``whsec_<base64>`` secret of the right size, or None."""
    if not isinstance(secret, str) or not secret.startswith(_SECRET_PREFIX):
        return None
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not _SECRET_BYTES[0] <= len(key) <= _SECRET_BYTES[1]:
        return None
    return Webhook(key)


def _endpoint(number: int, entry: Any, outcomes: Collection[str], seen: set[str]) -> Endpoint:
    """One endpoint of the setting; the error names it (by name, or by number without one)."""
    label = f"endpoint {number}"
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        if _NAME.match(entry["name"]):
            label = f"endpoint {entry['name']!r}"

    def fail(problem: str) -> WebhookConfigError:
        return WebhookConfigError(f"SCREENING_WEBHOOKS: {label}: {problem}")

    if not isinstance(entry, dict):
        raise fail("must be an object with name, url, secret and events")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise fail(f"unknown field(s) {', '.join(map(str, unknown))}")
    missing = sorted({"name", "url", "secret", "events"} - set(entry))
    if missing:
        raise fail(f"missing {', '.join(missing)}")
    name = entry["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("name must be 1 to 64 characters from A-Z a-z 0-9 . _ -")
    if name in seen:
        raise fail("another endpoint has this name")
    seen.add(name)
    if not http_url(entry["url"], query=True):
        raise fail(
            "url must be an absolute http:// or https:// address, without fragment, "
            "user or password"
        )
    signer = _signer(entry["secret"])
    if signer is None:
        raise fail(
            f"secret must be whsec_ followed by {_SECRET_BYTES[0]} to {_SECRET_BYTES[1]} "
            "random bytes in base64"
        )
    events = entry["events"]
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) and e in EVENTS for e in events)
    ):
        raise fail(f"events must be a non-empty list of: {', '.join(EVENTS)}")
    chosen: frozenset[str] | None = None
    if "outcomes" in entry:
        wanted = entry["outcomes"]
        if (
            not isinstance(wanted, list)
            or not wanted
            or not all(isinstance(o, str) and o in outcomes for o in wanted)
        ):
            raise fail(f"outcomes must be a non-empty list of: {', '.join(outcomes)}")
        chosen = frozenset(wanted)
    return Endpoint(name, entry["url"], signer, frozenset(events), chosen)


def parse_endpoints(value: Any, outcomes: Collection[str]) -> tuple[Endpoint, ...]:
    """The endpoints of ``SCREENING_WEBHOOKS`` (a JSON array, or the parsed list)."""
    value = json_array(
        value,
        WebhookConfigError,
        "SCREENING_WEBHOOKS: must be a JSON array",
        "SCREENING_WEBHOOKS: must be a JSON array of endpoints",
    )
    seen: set[str] = set()
    return tuple(_endpoint(n, entry, outcomes, seen) for n, entry in enumerate(value, 1))


def parse_public_url(value: Any, endpoints: tuple[Endpoint, ...]) -> str | None:
    """``SCREENING_PUBLIC_URL`` without a trailing slash; required when there are endpoints."""
    if value is None or value == "":
        if endpoints:
            raise WebhookConfigError(
                "SCREENING_PUBLIC_URL: needed with SCREENING_WEBHOOKS: the address the review "
                "pages are reached at (such as https://screening.example.org), for the "
                "events' url"
            )
        return None
    if not http_url(value):
        raise WebhookConfigError(
            "SCREENING_PUBLIC_URL: must be an absolute http:// or https:// address without "
            "query, fragment, user or password"
        )
    return str(value).rstrip("/")


def new_event_id() -> str:
    """A Standard Webhooks message id: unique, and without the dot the signature uses."""
    return f"msg_{secrets.token_hex(16)}"


class Notifier:
    """Turns a change to a screening into outbox rows, one per endpoint that wants it."""

    def __init__(self, endpoints: tuple[Endpoint, ...], public_url: str | None) -> None:
        self.endpoints = endpoints
        self.public_url = public_url or ""

    def wants(self, event_type: str) -> bool:
        """Whether any endpoint subscribed to this event type."""
        return any(event_type in e.events for e in self.endpoints)

    def payload(
        self, event_type: str, screening: ScreeningFacts, review_status: str, at: datetime
    ) -> str:
        """The JSON body of one event: notifications-v1.md's fields and nothing else."""
        body = {
            "type": event_type,
            "timestamp": rfc3339(at),
            "data": {
                "id": screening.id,
                "created_at": rfc3339(screening.created_at),
                "outcome": screening.outcome,
                "decided_by": screening.decided_by,
                "patient_ref": screening.patient_ref,
                "created_by": screening.created_by,
                "ruleset": {"id": screening.ruleset.id, "version": screening.ruleset.version},
                "review": {"status": review_status},
                "url": f"{self.public_url}/review/{screening.id}",
            },
        }
        return orjson.dumps(body).decode()

    def deliveries(
        self, event_type: str, screening: ScreeningFacts, review_status: str, at: datetime
    ) -> list[NewDelivery]:
        """The outbox rows for one event: none when no endpoint wants it."""
        targets = [e.name for e in self.endpoints if e.wants(event_type, screening.outcome)]
        if not targets:
            return []
        payload = self.payload(event_type, screening, review_status, at)
        event_id = new_event_id()
        return [
            {
                "event_id": event_id,
                "event_type": event_type,
                "endpoint": name,
                "screening_id": screening.id,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "created_at": at,
                "scheduled_at": at,
                "next_attempt_at": at,
            }
            for name in targets
        ]
