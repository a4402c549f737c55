"""The ceiling ``make bench`` compares the service with: a bare Flask app, nothing else.

``gunicorn --config gunicorn.conf.py 'bench.bare:create_app()'`` serves it on the same
settings as the service. Its one route answers ``{"status": "ok"}`` as the service's
``/healthz`` does, without the service's request ids, logs and metrics.
"""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import jsonify


def create_app() -> Flask:
    """A Flask app with one JSON route."""
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> Response:
        """The fixed answer."""
        return jsonify(status="ok")

    return app
