"""Reading settings: JSON arrays (``SCREENING_WEBHOOKS``, ``SCREENING_CDS_CLIENTS``) and
the addresses in them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit


def json_array(value: Any, error: type[Exception], not_json: str, not_array: str) -> list[Any]:
    """The entries of a setting given as JSON text, or as the list Flask already parsed from
    it; ``[]`` when unset. Raises ``error(not_json)`` for text that is no JSON, and
    ``error(not_array)`` for anything but an array."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise error(not_json) from None
    if not isinstance(value, list):
        raise error(not_array)
    return value


def http_url(value: Any, *, query: bool = False) -> bool:
    """Whether ``value`` is an absolute http:// or https:// address with a host, a numeric
    port if any, no fragment, no user or password (they would end up in logs), and a query
    only where ``query`` allows one."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.fragment
        and (query or not parts.query)
        and parts.username is None
        and parts.password is None
    )
