"""Idempotency-Key on POST /v1/screenings, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from screening.storage.lists import ListFilters
from screening.storage.store import Store
from screening.storage.tables import idempotency_records
from tests.support.app import BOTH_DATABASES
from tests.support.app import bearer

pytestmark = BOTH_DATABASES


def post(client: FlaskClient, body: dict[str, Any], key: str | None, who: str = "portal-a") -> Any:
    """POST a screening with an optional Idempotency-Key."""
    headers = bearer(who)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/screenings", json=body, headers=headers)


def stored(store: Store) -> int:
    """How many screenings are stored."""
    return len(store.screenings.page(ListFilters(), 100, None)[0])


def test_a_repeat_replays_the_first_response(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers, "patient_ref": "MRN-1"}
    first = post(client, body, "order-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = post(client, dict(reversed(list(body.items()))), "order-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert again.headers["Location"] == first.headers["Location"]
    assert stored(store) == 1
    assert [e["action"] for e in store.audit.entries()] == ["create"]


def test_another_body_with_the_same_key_is_422(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    post(client, {"answers": valid_answers}, "order-1")
    other = post(client, {"answers": {**valid_answers, "age_years": 46}}, "order-1")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.get_json()["errors"]
    assert stored(store) == 1


def test_keys_are_scoped_per_key_name(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers}
    first = post(client, body, "same", who="portal-a")
    second = post(client, body, "same", who="portal-b")
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.get_json()["id"] != second.get_json()["id"]
    assert stored(store) == 2


def test_without_a_key_every_post_stores(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    post(client, {"answers": valid_answers}, None)
    post(client, {"answers": valid_answers}, None)
    assert stored(store) == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\tkey", "é"])
def test_malformed_key_is_422(client: FlaskClient, valid_answers: dict[str, Any], key: str) -> None:
    response = client.post(
        "/v1/screenings",
        json={"answers": valid_answers},
        headers={**bearer("portal-a"), "Idempotency-Key": key.encode().decode("latin-1")},
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]


def test_a_key_still_in_flight_is_409(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers}
    # Claim the key as a first request would, and leave it in progress.
    from screening.services.screenings import request_fingerprint

    assert (
        store.idempotency.claim(
            "portal-a", "busy", request_fingerprint("application/json", body)
        ).state
        == "new"
    )
    response = post(client, body, "busy")
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "1"
    assert stored(store) == 0


def _age(store: Store, column: str, by: timedelta) -> None:
    with store.engine.begin() as conn:
        conn.execute(idempotency_records.update().values({column: datetime.now(UTC) - by}))


def test_a_claim_left_by_a_dead_request_is_taken_over(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    from screening.services.screenings import request_fingerprint

    body = {"answers": valid_answers}
    store.idempotency.claim("portal-a", "orphan", request_fingerprint("application/json", body))
    _age(store, "locked_at", timedelta(minutes=5))
    response = post(client, body, "orphan")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert post(client, body, "orphan").headers["Idempotent-Replayed"] == "true"
    assert stored(store) == 1


def test_after_24_hours_a_key_is_new_again(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers}
    first = post(client, body, "old")
    _age(store, "expires_at", timedelta(seconds=1))
    again = post(client, body, "old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] != first.get_json()["id"]
    assert stored(store) == 2


def test_a_failed_request_frees_its_key(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    bad = post(client, {"answers": {**valid_answers, "age_years": "old"}}, "retry-me")
    assert bad.status_code == 422
    with store.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(idempotency_records)).scalar() == 0
        )
    fixed = post(client, {"answers": valid_answers}, "retry-me")
    assert fixed.status_code == 201
    assert stored(store) == 1


def test_a_stalled_request_that_lost_its_claim_stores_nothing(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    from screening.services.screenings import request_fingerprint
    from screening.storage.idempotency import ClaimLost

    body = {"answers": valid_answers}
    stalled = store.idempotency.claim(
        "portal-a", "stall", request_fingerprint("application/json", body)
    )
    assert stalled.token is not None
    _age(store, "locked_at", timedelta(minutes=5))
    retry = post(client, body, "stall")
    assert retry.status_code == 201
    # The stalled request wakes up: it can neither finish nor release the key.
    first = store.screenings.get(retry.get_json()["id"])
    assert first is not None
    row = replace(first, id="f" * 32)
    with pytest.raises(ClaimLost):
        store.screenings.insert(
            row, idempotency=("portal-a", "stall", stalled.token), response=(201, "{}")
        )
    store.idempotency.release("portal-a", "stall", stalled.token)
    assert stored(store) == 1
    assert post(client, body, "stall").headers["Idempotent-Replayed"] == "true"
