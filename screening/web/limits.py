"""Rate limiting (Flask-Limiter): one budget per caller across all routes.

``SCREENING_RATE_LIMIT`` (for example ``50/second``) is one budget per caller,
shared by every route, unknown addresses included, so spreading requests over
routes buys nothing. The caller is:

- the API key's name for a request with a valid bearer token;
- on the review pages, the signed-in clinician's key name (the same budget as
  that key's API calls), and the client's address only before signing in;
- otherwise the client's address, which behind reverse proxies is the one they
  forwarded (``SCREENING_TRUSTED_PROXIES``, see ``screening.web.proxies``).

Health checks and ``/metrics`` are never limited. An empty setting turns limiting
off, as ``make bench`` does. With several workers or replicas, point
``SCREENING_RATE_LIMIT_STORAGE`` at a shared store (for example
``redis://...``); the default ``memory://`` counts per process.
"""

from __future__ import annotations

from flask import Flask
from flask import request
from flask_limiter import Limiter

from screening.web.auth import identify_request
from screening.web.ops import PROBE_ENDPOINTS
from screening.web.review import signed_in_key

#: Routes that operators and load balancers call; never limited.
EXEMPT_ENDPOINTS = PROBE_ENDPOINTS | {"metrics.metrics"}
#: What the limiter calls a request that matched no route (it skips requests it can't name).
UNMATCHED = "<unmatched>"


def caller() -> str:
    """Whose budget the current request draws on: a key name, or a client address."""
    key = signed_in_key() if request.blueprint == "review" else identify_request()
    if key is not None:
        return f"key:{key.name}"
    return f"addr:{request.remote_addr or 'unknown'}"


def _exempt() -> bool:
    return request.endpoint in EXEMPT_ENDPOINTS


def _request_name() -> str:
    return request.endpoint or UNMATCHED


def init_app(app: Flask, rate_limit: str, storage: str) -> Limiter | None:
    """Install the limiter when ``rate_limit`` (checked by the settings) is not empty."""
    if not rate_limit:
        return None
    return Limiter(
        caller,
        app=app,
        # Application limits share one counter per caller across every route; default
        # limits would give each route a budget of its own.
        application_limits=[rate_limit],
        application_limits_exempt_when=_exempt,
        request_identifier=_request_name,
        storage_uri=storage,
        headers_enabled=True,
    )
