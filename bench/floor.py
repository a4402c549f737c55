"""The floor of a durable write: a bare Flask app storing one screening-sized document.

``make bench`` serves it beside the ceiling (``bench/bare.py``) and the service, on the
same gunicorn settings, to show how far a stored POST can go on the machine at hand
before any of the service's own work: each ``POST /write`` reads and parses its JSON
body, inserts one 7 kB document (a real stored result, made once at start; a stored
screening is about 8 kB with its answers) under a new id, and answers 201 with the id
only after the commit is durable. It commits the way the service does: SQLite with WAL
and ``synchronous=FULL``, PostgreSQL with ``synchronous_commit`` on, through the service's
``Store.grouped`` (on SQLite group commit: concurrent requests share one flush, one writer
at a time across processes; on PostgreSQL each commits alone). No validation, rules,
audit, outbox, logging or metrics.

``FLOOR_DATABASE_URL`` names the database (``bench/load.py`` makes a fresh one).
"""

from __future__ import annotations

import os
import uuid

import orjson
import sqlalchemy as sa
from flask import Flask
from flask import Response
from flask import jsonify
from flask import request

from screening import PROJECT_ROOT
from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.rulebook import load_rules
from screening.storage.database import make_engine
from screening.storage.store import Store

_TABLE = "CREATE TABLE IF NOT EXISTS floor_writes (id VARCHAR(36) PRIMARY KEY, body TEXT NOT NULL)"


def _document() -> str:
    """A stored result as the service writes it: the first rule case's, as JSON."""
    rulebook = load_rules(PROJECT_ROOT / "rules")
    case = next(c for c in load_cases(rulebook) if "errors" not in c.expect)
    return orjson.dumps(evaluate(case.answers, rulebook.ruleset)).decode()


def create_app() -> Flask:
    """A Flask app whose one route stores a document durably, and a health check."""
    app = Flask(__name__)
    store = Store(make_engine(os.environ["FLOOR_DATABASE_URL"]))
    app.extensions["floor_store"] = store
    with store.transaction() as conn:
        conn.exec_driver_sql(_TABLE)
    grouped = store.grouped
    insert = sa.text("INSERT INTO floor_writes (id, body) VALUES (:id, :body)")
    document = _document()

    @app.get("/healthz")
    def healthz() -> Response:
        """Up (the benchmark waits for this before it starts)."""
        return jsonify(status="ok")

    @app.post("/write")
    def write() -> tuple[Response, int]:
        """Parse the body, store the document, answer once it is on disk."""
        orjson.loads(request.get_data())
        row = {"id": str(uuid.uuid4()), "body": document}
        grouped.run(lambda conn: conn.execute(insert, row))
        return jsonify(id=row["id"]), 201

    return app
