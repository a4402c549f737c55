"""Structured logs, request ids and Prometheus metrics.

One JSON line per request goes to stdout: request id, method, route template,
status, duration and the caller's key name (also when the key was refused with
403 or 429) or CDS client's issuer. A health probe that succeeds writes none: a load
balancer asks several times a second, and those lines would bury the requests that
matter and cost about a quarter of the probe's own time; one that fails is logged,
and every probe is still counted in the metrics. Never the path's query string, a body, an
answer, a note, a token or a patient_ref: the route template (for example
``/v1/screenings/<screening_id>``) stands in for the path. Metric labels take values
from fixed sets only.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import sys
import time
import uuid

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from pythonjsonlogger.orjson import OrjsonFormatter

from screening import extension
from screening.services.keys import token_digest
from screening.services.metrics import DatabaseGauges
from screening.services.problems import ProblemError
from screening.web.ops import PROBE_ENDPOINTS

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_ACCESS_LOGGER = "screening.access"

# Label values come from fixed sets, whatever a client sends: a method name or a path
# is anything a client types, and every new label value is a new series held in memory
# (and, under gunicorn, in the multiprocess files) until the process ends.
#: The methods counted by name (RFC 9110's, and PATCH); any other is counted as "other".
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
OTHER_METHOD = "other"
#: The route of a request that matched no route of the URL map.
UNMATCHED_ROUTE = "<unmatched>"

# Module level: Prometheus metrics are process-wide, whatever number of apps.
REQUESTS = Counter(
    "screening_http_requests_total",
    "HTTP requests by route and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "screening_http_request_duration_seconds",
    "Time spent in the app per request, by route.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

bp = Blueprint("metrics", __name__)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time (test capture swaps it)."""

    _screening_json = True

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record to the current stdout."""
        self.stream = sys.stdout
        super().emit(record)


def configure_logging() -> None:
    """Send the service's logs to stdout as JSON lines (once per process)."""
    logger = logging.getLogger("screening")
    if any(getattr(h, "_screening_json", False) for h in logger.handlers):
        return
    handler = _StdoutHandler(sys.stdout)
    handler.setFormatter(
        OrjsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # Flask adds its own stderr handler to a logger that has none; this one has.
    logger.propagate = False


def _start() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def method_label(method: str) -> str:
    """The ``method`` label of a request: its method if a standard one, else "other"."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


def route_label() -> str:
    """The ``route`` label of the current request: a rule of the URL map, or "<unmatched>"."""
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE


def _caller_name() -> str | None:
    """The name of who called, also when the request was refused (403, 429): a key's, a
    review session's, or an EHR's issuer."""
    caller = g.get("caller")
    return None if caller is None else str(caller.name)


def _finish(response: Response) -> Response:
    duration = time.perf_counter() - g.get("started", time.perf_counter())
    route = route_label()
    method = method_label(request.method)
    status = response.status_code
    # The status comes from this app's own responses, a small fixed set.
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route, method).observe(duration)
    response.headers["X-Request-ID"] = g.get("request_id", "")
    # Everything not localized (errors, clinician views, operations) is English.
    response.headers.setdefault("Content-Language", "en")
    if status < 400 and request.endpoint in PROBE_ENDPOINTS:
        return response
    logging.getLogger(_ACCESS_LOGGER).info(
        "request",
        extra={
            "request_id": g.get("request_id"),
            # The same bounded value as the metrics: a log line never carries what a
            # client typed in place of a method.
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration * 1000, 2),
            "key": _caller_name(),
        },
    )
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics, for a caller holding the metrics token."""
    expected = extension.settings().metrics_key
    if not expected:
        raise ProblemError("Nothing is found at this address.", status=404)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    presented = token_digest(token.strip()) if scheme.lower() == "bearer" else ""
    if not hmac.compare_digest(presented, str(expected)):
        raise ProblemError(
            "Send the metrics token as a Bearer token.",
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Under gunicorn each worker writes its own files; add them up per scrape.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    # Read from the database at each scrape: the same on every worker and instance.
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(DatabaseGauges(extension.notifications().gauges))
    data += generate_latest(gauges)
    return current_app.response_class(data, mimetype=CONTENT_TYPE_LATEST.split(";")[0])


def init_app(app: Flask) -> None:
    """Request ids, access logs and metrics for every request of ``app``."""
    configure_logging()
    app.before_request(_start)
    app.after_request(_finish)
    app.register_blueprint(bp)
