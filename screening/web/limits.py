"""Per-key rate limiting (Flask-Limiter), set by ``SCREENING_RATE_LIMIT``.

The limit is counted per API key name (per client address for requests without
a valid key). An empty setting turns limiting off, as ``make bench`` does. With
several workers or replicas, point ``SCREENING_RATE_LIMIT_STORAGE`` at a shared
store (for example ``redis://...``); the default ``memory://`` counts per process.
"""

from __future__ import annotations

from flask import Flask
from flask import request
from flask_limiter import Limiter
from limits import parse_many

from screening.web.auth import identify_request

#: Routes that operators and load balancers call; never limited.
EXEMPT_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz", "metrics.metrics"})


class RateLimitConfigError(ValueError):
    """``SCREENING_RATE_LIMIT`` can't be parsed."""


def _caller() -> str:
    key = identify_request()
    if key is not None:
        return f"key:{key.name}"
    return f"addr:{request.remote_addr or 'unknown'}"


def _exempt() -> bool:
    return request.endpoint in EXEMPT_ENDPOINTS


def init_app(app: Flask) -> Limiter | None:
    """Install the limiter when ``RATE_LIMIT`` is set; raise on an unreadable limit."""
    rate_limit = str(app.config.get("RATE_LIMIT") or "").strip()
    if not rate_limit:
        return None
    try:
        parse_many(rate_limit)
    except ValueError:
        raise RateLimitConfigError(
            f"SCREENING_RATE_LIMIT: '{rate_limit}' is not a limit such as 50/second"
        ) from None
    return Limiter(
        _caller,
        app=app,
        default_limits=[rate_limit],
        default_limits_exempt_when=_exempt,
        storage_uri=str(app.config.get("RATE_LIMIT_STORAGE") or "memory://"),
        headers_enabled=True,
    )
