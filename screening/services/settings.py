"""Reading settings that hold a JSON array (``SCREENING_WEBHOOKS``, ``SCREENING_CDS_CLIENTS``)."""

from __future__ import annotations

import json
from typing import Any


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
