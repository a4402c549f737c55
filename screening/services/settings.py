"""Reading settings: JSON arrays (``SCREENING_WEBHOOKS``, ``SCREENING_CDS_CLIENTS``) and
the addresses in them."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def json_objects(
    setting: str, value: Any, kind: str, example: str, object_needs: str, fields: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The entries of ``setting``, a JSON array of ``kind`` objects with only ``fields``, each
    with how an error names it (``SCREENING_X entry 2``); ValueError naming what is wrong."""
    entries = json_array(
        value,
        ValueError,
        f"{setting}: not JSON; give a JSON array of {kind}",
        f"{setting}: must be a JSON array of {kind}, [{example}]",
    )
    for position, entry in enumerate(entries, start=1):
        where = f"{setting} entry {position}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object with {object_needs}")
        unknown = set(entry) - fields
        if unknown:
            raise ValueError(f"{where}: unknown field {sorted(unknown)[0]}")
        yield where, entry
