"""The screening service's own rules, on an in-memory store: what an Idempotency-Key
does, what a portal may see, what a review records. The same rules against both
databases are in tests/web (test_idempotency.py, test_screenings_api.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from screening.records import Screening
from screening.rules.rulebook import Rulebook
from screening.services.keys import ApiKey
from screening.services.problems import ProblemError
from screening.services.problems import ValidationProblem
from screening.services.screenings import ScreeningService
from screening.services.screenings import Submission
from tests.support.memory import MemoryStore

PORTAL_A = ApiKey("portal-a", "portal", b"a")
PORTAL_B = ApiKey("portal-b", "portal", b"b")
CLINICIAN = ApiKey("dr-c", "clinician", b"c")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def service(store: MemoryStore, rulebook: Rulebook) -> ScreeningService:
    return ScreeningService(store, rulebook)


def _check(service: ScreeningService, rulebook: Rulebook, answers: dict[str, Any]) -> Any:
    envelope = {"questionnaire": None, "ruleset": None, "answers": answers, "patient_ref": "P1"}

    def check() -> Submission:
        return service.check_submission(envelope, rulebook.catalogs["en"])

    return check


def _render(record: Screening) -> str:
    return json.dumps({"id": record.id, "outcome": record.outcome})


def test_a_repeated_key_replays_the_first_answer_and_stores_nothing_new(
    service: ScreeningService, store: MemoryStore, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    check = _check(service, rulebook, valid_answers)
    first = service.create(PORTAL_A, check, ("key-1", "fingerprint"), _render)
    again = service.create(PORTAL_A, check, ("key-1", "fingerprint"), _render)
    assert (again.screening_id, again.body, again.replayed) == (
        first.screening_id,
        first.body,
        True,
    )
    assert list(store.screenings.rows) == [first.screening_id]
    # The key is the caller's: another portal's same key is another request.
    other = service.create(PORTAL_B, check, ("key-1", "fingerprint"), _render)
    assert other.screening_id != first.screening_id and not other.replayed


def test_a_key_reused_with_another_body_is_refused_naming_it(
    service: ScreeningService, store: MemoryStore, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    check = _check(service, rulebook, valid_answers)
    service.create(PORTAL_A, check, ("key-1", "fingerprint"), _render)
    with pytest.raises(ValidationProblem) as caught:
        service.create(PORTAL_A, check, ("key-1", "another"), _render)
    assert list(caught.value.errors or {}) == ["Idempotency-Key"]
    assert len(store.screenings.rows) == 1


def test_a_key_still_in_flight_is_a_409_and_a_failed_request_frees_its_key(
    service: ScreeningService, store: MemoryStore, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    store.idempotency.claim("portal-a", "busy", "fingerprint")
    with pytest.raises(ProblemError) as caught:
        service.create(
            PORTAL_A, _check(service, rulebook, valid_answers), ("busy", "fingerprint"), _render
        )
    assert caught.value.status == 409
    bad = _check(service, rulebook, {**valid_answers, "pain_intensity": 42})
    with pytest.raises(ValidationProblem):
        service.create(PORTAL_A, bad, ("key-2", "fingerprint"), _render)
    assert ("portal-a", "key-2") not in store.idempotency.claims
    # Corrected, the retry with the same key runs afresh.
    fixed = service.create(
        PORTAL_A, _check(service, rulebook, valid_answers), ("key-2", "fingerprint"), _render
    )
    assert not fixed.replayed and fixed.screening_id in store.screenings.rows


def test_a_portal_reads_only_its_own_screenings_and_every_read_is_audited(
    service: ScreeningService, store: MemoryStore, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    created = service.create(PORTAL_A, _check(service, rulebook, valid_answers), None, _render)
    assert service.read(created.screening_id, PORTAL_A).created_by == "portal-a"
    with pytest.raises(ProblemError) as caught:
        service.read(created.screening_id, PORTAL_B)
    # The same answer as for an id that does not exist: nothing tells it apart.
    with pytest.raises(ProblemError) as missing:
        service.read("0" * 32, PORTAL_B)
    assert caught.value.status == missing.value.status == 404
    assert caught.value.detail == missing.value.detail
    assert service.read(created.screening_id, CLINICIAN).id == created.screening_id
    reads = [e for e in store.audit.entries if e[1] == "read"]
    assert reads == [
        ("key:portal-a", "read", created.screening_id),
        ("key:dr-c", "read", created.screening_id),
    ]


def test_a_review_records_who_and_the_note_and_an_unknown_id_is_404(
    service: ScreeningService, store: MemoryStore, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    created = service.create(PORTAL_A, _check(service, rulebook, valid_answers), None, _render)
    reviewed = service.review(created.screening_id, "Called the patient.", CLINICIAN)
    assert reviewed.review_status == "reviewed"
    assert [(r.by, r.note) for r in reviewed.reviews] == [("dr-c", "Called the patient.")]
    assert ("key:dr-c", "review", created.screening_id) in store.audit.entries
    for unknown in ("0" * 32, "not\x00printable"):
        with pytest.raises(ProblemError) as caught:
            service.review(unknown, None, CLINICIAN)
        assert caught.value.status == 404
