"""Timestamps as the service writes them: RFC 3339 in UTC with a ``Z``.

Below every layer (it imports nothing of the service), so the API's views, the FHIR
resources and webhook payloads write a moment the same way.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp as RFC 3339 (also a FHIR ``instant``) with a Z suffix."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
