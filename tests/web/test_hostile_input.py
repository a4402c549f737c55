"""Hostile and malformed input: a clear problem every time, never a 500, nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from screening.storage.lists import ListFilters
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import bearer

pytestmark = BOTH_DATABASES


def raw_post(client: FlaskClient, path: str, data: bytes | str, who: str = "portal-a") -> Any:
    """POST raw bytes as application/json."""
    headers = {**bearer(who), "Content-Type": "application/json"}
    return client.post(path, data=data, headers=headers)


def stored(store: Store) -> int:
    """How many screenings are stored."""
    return len(store.screenings.page(ListFilters(), 100, None)[0])


def test_deeply_nested_json(client: FlaskClient, store: Store) -> None:
    depth = 20_000
    body = '{"answers": ' + "[" * depth + "]" * depth + "}"
    response = raw_post(
        client, "/v1/screenings", body[: 64 * 1024 - 10] if len(body) > 65000 else body
    )
    assert response.status_code in (400, 413)
    nested = '{"answers": ' + "[" * 5000 + "]" * 5000 + "}"
    response = raw_post(client, "/v1/screenings", nested)
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"
    assert stored(store) == 0


def test_huge_strings(client: FlaskClient, store: Store, valid_answers: dict[str, Any]) -> None:
    valid_answers["pregnant"] = "y" * 60_000
    response = raw_post(client, "/v1/screenings", json.dumps({"answers": valid_answers}))
    assert response.status_code == 422
    assert "yyyy" not in response.get_data(as_text=True)
    too_big = raw_post(client, "/v1/screenings", json.dumps({"answers": {"a": "b" * 100_000}}))
    assert too_big.status_code == 413
    assert stored(store) == 0


def test_thousands_of_keys(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    answers = {**valid_answers, **{f"k{n}": n for n in range(3000)}}
    response = raw_post(client, "/v1/screenings", json.dumps({"answers": answers}))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert len(errors) <= 31
    assert "answers" in errors
    odd = {**valid_answers, **{f"Jane Doe {n}": 1 for n in range(50)}}
    response = raw_post(client, "/v1/screenings", json.dumps({"answers": odd}))
    assert "Jane" not in response.get_data(as_text=True)
    assert stored(store) == 0


@pytest.mark.parametrize(
    "data",
    [
        b'{"answers": {"pregnant": "\xc3\x28"}}',
        b"\xff\xfe\xfd",
        b'{"answers": {}, "patient_ref": "\xed\xa0\x80"}',
    ],
)
def test_invalid_utf8(client: FlaskClient, store: Store, data: bytes) -> None:
    response = raw_post(client, "/v1/screenings", data)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert stored(store) == 0


def test_nul_bytes(client: FlaskClient, store: Store, valid_answers: dict[str, Any]) -> None:
    bad = dict(valid_answers, pregnant="no\u0000")
    assert raw_post(client, "/v1/screenings", json.dumps({"answers": bad})).status_code == 422
    ref = raw_post(
        client, "/v1/screenings", json.dumps({"answers": valid_answers, "patient_ref": "A\u0000"})
    )
    assert ref.status_code == 422
    key = raw_post(client, "/v1/screenings", json.dumps({"answers": {"\u0000": 1}}))
    assert key.status_code == 422
    screening_id = raw_post(
        client, "/v1/screenings", json.dumps({"answers": valid_answers}), who="dr-c"
    ).get_json()["id"]
    note = raw_post(
        client,
        f"/v1/screenings/{screening_id}/review",
        json.dumps({"note": "line one\u0000line two"}),
        who="dr-c",
    )
    assert note.status_code == 422
    assert "note" in note.get_json()["errors"]
    record = store.screenings.get(screening_id)
    assert record is not None and record.reviews == ()


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" * 5000, "NaN", "Infinity", "1.0"])
def test_odd_numbers(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any], number: str
) -> None:
    body = json.dumps({"answers": valid_answers}).replace(
        '"age_years": 45', f'"age_years": {number}'
    )
    response = raw_post(client, "/v1/screenings", body)
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"
    if response.status_code == 422:
        assert list(response.get_json()["errors"]) == ["age_years"]
    assert stored(store) == 0
