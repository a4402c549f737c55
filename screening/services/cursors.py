"""The list's opaque cursors: where a page ended, for the client to send back.

A cursor is base64url JSON of the last row's position, ``(created_at, id)`` newest first
or ``(band, created_at, id)`` in triage order (the store's ``Position``). Anything that
did not come from here is a ``CursorError``, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from datetime import timedelta
from typing import Any


class CursorError(ValueError):
    """A list cursor that this service did not issue."""


def _pack(values: list[Any]) -> str:
    raw = json.dumps(values).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CursorError("not a cursor") from None


def _position(stamp: Any, screening_id: Any) -> tuple[datetime, str]:
    """A cursor's moment and screening id, checked."""
    try:
        moment = datetime.fromisoformat(stamp)
    except (ValueError, TypeError):
        raise CursorError("not a cursor") from None
    # The encoders write UTC times and ascii ids; anything else (a NUL, a
    # surrogate, a time UTC can't hold) would fail in the database, not here.
    if (
        not isinstance(screening_id, str)
        or not (screening_id.isascii() and screening_id.isprintable())
        or moment.utcoffset() != timedelta(0)
    ):
        raise CursorError("not a cursor")
    return moment, screening_id


def encode_cursor(created_at: datetime, screening_id: str) -> str:
    """An opaque cursor pointing just after one screening in newest-first order."""
    return _pack([created_at.isoformat(), screening_id])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Undo ``encode_cursor``; raise ``CursorError`` for anything else."""
    values = _unpack(cursor)
    if not isinstance(values, list) or len(values) != 2:
        raise CursorError("not a cursor")
    return _position(*values)


def encode_triage_cursor(band: int, created_at: datetime, screening_id: str) -> str:
    """An opaque cursor pointing just after one screening in triage order."""
    return _pack([band, created_at.isoformat(), screening_id])


def decode_triage_cursor(cursor: str) -> tuple[int, datetime, str]:
    """Undo ``encode_triage_cursor``; raise ``CursorError`` for anything else,
    a newest-first cursor included."""
    values = _unpack(cursor)
    if not isinstance(values, list) or len(values) != 3:
        raise CursorError("not a cursor")
    band = values[0]
    if type(band) is not int or not 0 <= band <= 2:
        raise CursorError("not a cursor")
    return (band, *_position(values[1], values[2]))
