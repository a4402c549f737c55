"""Reading request bodies: content type (415), size (413), JSON object (400)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from flask import request

from screening.services.problems import ProblemError
from screening.services.problems import ValidationProblem

JSON = "application/json"
FHIR_JSON = "application/fhir+json"
UNSTORABLE = (
    "Must nest objects and lists at most 254 levels deep, and hold whole numbers "
    "only from -2^63 to 2^64 - 1."
)
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON, whatever Python's parser allows.
    raise ValueError(f"{name} is not JSON")


def json_object(accepted: tuple[str, ...] = (JSON,)) -> tuple[str, dict[str, object]]:
    """The body's media type and JSON object, or a problem saying what is wrong with it."""
    if request.mimetype not in accepted:
        raise ProblemError(f"Send the body as {' or '.join(accepted)}.", status=415)
    raw = request.get_data(cache=True)  # Werkzeug raises 413 past MAX_CONTENT_LENGTH.
    try:
        # Decode strictly: json.loads(bytes) would let encoded surrogates through.
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ProblemError("The body is not valid JSON.", status=400) from None
    if not isinstance(data, dict):
        raise ProblemError("The body must be a JSON object.", status=400)
    # Only JSON escapes can smuggle NUL or a lone surrogate in (the strict UTF-8
    # decode above refuses raw ones): walk the document only when one appears.
    where = _unstorable_text(data) if _SUSPECT_ESCAPE.search(raw) else None
    if where is not None:
        raise ValidationProblem(
            {where: ["Must not contain NUL characters or unpaired surrogates."]}
        )
    _check_storable(data)
    return request.mimetype, data


def _check_storable(data: dict[str, object]) -> None:
    """Refuse a document the store could not write: too deeply nested, or numbers too large.

    The store writes JSON with orjson (a FHIR body is kept whole as the screening's
    source), which takes at most 254 levels of nesting and whole numbers from -2^63 to
    2^64 - 1; trying it costs microseconds. Every route checks alike, so evaluating a
    body and storing it agree.
    """
    try:
        orjson.dumps(data)
    except orjson.JSONEncodeError:
        raise ValidationProblem({"body": [UNSTORABLE]}) from None


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unstorable_text(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) no database can store as text.

    JSON can spell NUL (\\u0000) and lone surrogates (\\ud800); PostgreSQL
    refuses both, so they are turned away here, for every route alike.
    """
    if isinstance(value, str):
        return (path or "body") if _bad_text(value) else None
    if isinstance(value, dict):
        for key, inner in value.items():
            here = f"{path}.{key}" if path else key
            if _bad_text(key):
                return path or "body"
            found = _unstorable_text(inner, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found = _unstorable_text(inner, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None
