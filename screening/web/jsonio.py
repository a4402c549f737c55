"""Fast JSON for responses and stored documents (orjson).

A screening's result with its trace is 10-15 kB of JSON, written to the
database and often to the response: the standard library's encoder was the
largest single cost of ``POST /v1/screenings`` after the database itself.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask
from flask import Response
from flask import current_app
from flask.json.provider import JSONProvider


def dumps(value: Any) -> str:
    """Serialize to a JSON string (UTF-8, keys in insertion order)."""
    return orjson.dumps(value).decode()


def loads(text: str | bytes) -> Any:
    """Parse a JSON document."""
    return orjson.loads(text)


class OrjsonProvider(JSONProvider):
    """Flask's ``jsonify`` through orjson."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialize ``obj``; Flask's keyword options don't apply to orjson."""
        return dumps(obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse ``s``."""
        return loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response of the one value (or keyword values) given."""
        data = self._prepare_response_obj(args, kwargs)
        return current_app.response_class(orjson.dumps(data), mimetype="application/json")


def init_app(app: Flask) -> None:
    """Use orjson for ``jsonify`` and ``app.json``."""
    app.json = OrjsonProvider(app)
