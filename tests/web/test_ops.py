"""Readiness: 503 while the database does not answer; nothing leaks."""

from __future__ import annotations

import pytest

from tests.support.app import make_app


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent-folder/screening.db",
        "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=1",
    ],
)
def test_readyz_is_503_while_the_database_does_not_answer(url: str) -> None:
    with make_app(url) as app:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        body = response.get_data(as_text=True)
        assert "nonexistent" not in body and "psycopg" not in body and "127.0.0.1" not in body
        # Liveness does not depend on the database.
        assert app.test_client().get("/healthz").status_code == 200
