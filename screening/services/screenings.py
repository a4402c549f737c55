"""Submitting, reading, listing and reviewing screenings: the steps between view and store.

The web layer parses a request (its envelope schema, its query), calls one method
of ``ScreeningService`` and shapes the answer; the service applies the rules,
stores and audits. None of it knows about HTTP beyond the problem errors it raises.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from screening.fhir.forms import answers_from_questionnaire_response
from screening.records import Document
from screening.records import ListRow
from screening.records import NewDelivery
from screening.records import QuestionnaireRef
from screening.records import Result
from screening.records import RulesetRef
from screening.records import Screening
from screening.records import ShadowOutcome
from screening.rules.engine import evaluate
from screening.rules.i18n import Catalog
from screening.rules.questionnaire import Answers
from screening.rules.rulebook import ChoiceError
from screening.rules.rulebook import Package
from screening.rules.rulebook import Rulebook
from screening.services.cursors import CursorError
from screening.services.cursors import decode_cursor
from screening.services.cursors import decode_triage_cursor
from screening.services.cursors import encode_cursor
from screening.services.cursors import encode_triage_cursor
from screening.services.keys import Principal
from screening.services.metrics import record_outcome
from screening.services.metrics import record_shadow_disagreement
from screening.services.problems import ProblemError
from screening.services.problems import ValidationProblem
from screening.services.repositories import ScreeningStore
from screening.services.triage import DEFAULT_URGENT_REVIEW_MINUTES
from screening.services.triage import ReviewClock
from screening.services.webhooks import CREATED
from screening.services.webhooks import REVIEWED
from screening.services.webhooks import Notifier
from screening.storage.database import json_digest
from screening.storage.idempotency import ClaimLost
from screening.storage.lists import ListFilters
from screening.storage.lists import Position

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submission:
    """A request body that passed every check, and its result."""

    answers: Answers
    patient_ref: str | None
    result: Result
    #: The package whose questionnaire checked the answers and whose ruleset decided.
    package: Package
    language: str = "en"
    source: Document | None = None


@dataclass(frozen=True, slots=True)
class Created:
    """A screening response: new (201) or replayed from an Idempotency-Key."""

    screening_id: str
    body: str
    language: str
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the clinician list and the cursor of the next."""

    rows: list[ListRow]
    next_cursor: str | None


def request_fingerprint(kind: str, body: Any) -> str:
    """A hash of what was asked, to tell a true retry from a reused key."""
    return json_digest([kind, body])


def _in_flight() -> ProblemError:
    return ProblemError(
        "A request with this Idempotency-Key is still being processed. Retry shortly.",
        status=409,
        headers={"Retry-After": "1"},
    )


def _may_exist(screening_id: str) -> bool:
    # Ids are printable ASCII (hex); anything else names no screening, and a NUL
    # would make PostgreSQL fail the query instead.
    return screening_id.isascii() and screening_id.isprintable()


def _not_found() -> ProblemError:
    return ProblemError("There is no screening with this id.", status=404)


class ScreeningService:
    """The screening use cases over one store and the loaded rules."""

    def __init__(
        self,
        store: ScreeningStore,
        rulebook: Rulebook,
        notifier: Notifier | None = None,
        clock: ReviewClock | None = None,
    ) -> None:
        self.store = store
        self.rulebook = rulebook
        self.notifier = notifier or Notifier((), None)
        self.clock = clock or ReviewClock.for_outcomes(
            rulebook.outcomes, DEFAULT_URGENT_REVIEW_MINUTES
        )

    # --- checking and evaluating ----------------------------------------------------

    def _submission(
        self,
        package: Package,
        answers: Answers,
        patient_ref: str | None,
        catalog: Catalog,
        source: Document | None = None,
    ) -> Submission:
        """Apply the package's rules; the patient summary is built, and kept, in the
        language it is read in."""
        result = evaluate(answers, package.ruleset, package.catalogs[catalog.language])
        typed = Result(
            outcome=result["outcome"],
            decided_by=result["decided_by"],
            matched_rules=tuple(result["matched_rules"]),
            summary=result["summary"],
            trace=result["trace"],
            shadow=self._shadows(package, answers),
        )
        return Submission(answers, patient_ref, typed, package, catalog.language, source)

    def _shadows(self, package: Package, answers: Answers) -> tuple[ShadowOutcome, ...]:
        """Every shadow ruleset of the questionnaire, evaluated beside the deciding one.

        Never shown to a patient; a shadow ruleset that fails is logged (its id and
        version, never the answers) and left out, and never fails the request.
        """
        shadows = []
        for shadow in self.rulebook.shadows(package.questionnaire):
            ruleset = shadow.ruleset
            try:
                result = evaluate(answers, ruleset)
            except Exception:
                logger.exception("shadow ruleset %s %s failed", ruleset.id, ruleset.version)
                continue
            shadows.append(
                ShadowOutcome(
                    RulesetRef(ruleset.id, ruleset.version, ruleset.sha256),
                    result["outcome"],
                    result["decided_by"],
                    tuple(result["matched_rules"]),
                )
            )
        return tuple(shadows)

    def replay_rows(
        self,
        questionnaire: tuple[str, str],
        since: datetime | None,
        until: datetime | None,
        ruleset_id: str | None = None,
    ) -> Iterator[tuple[str, Answers, str, str]]:
        """(id, answers, outcome, decided_by) of each stored screening of a questionnaire
        version (decided by ``ruleset_id`` when given), oldest first, streamed in bounded
        memory; reads only."""
        return self.store.screenings.replay_rows(questionnaire, since, until, ruleset_id=ruleset_id)

    def choose(
        self, questionnaire: Mapping[str, str] | None, ruleset: Mapping[str, Any] | None
    ) -> Package:
        """The package a request's references name (422 naming the field when unusable)."""
        try:
            return self.rulebook.choose(questionnaire, ruleset)
        except ChoiceError as exc:
            raise ValidationProblem({exc.field: [exc.message]}) from None

    def questionnaire_package(self, version: str | None) -> Package:
        """The default package of a served questionnaire version (404 naming it when none)."""
        try:
            return self.rulebook.for_questionnaire(version)
        except ChoiceError as exc:
            raise ProblemError(exc.message, status=404, errors={"version": [exc.message]}) from None

    def package(self, ruleset_id: str, version: str) -> Package:
        """A loaded package by ruleset id and version, whatever its status (404 when none)."""
        package = self.rulebook.package(ruleset_id, version)
        if package is None:
            raise ProblemError("There is no ruleset with this id and version.", status=404)
        return package

    def check_submission(self, envelope: Mapping[str, Any], catalog: Catalog) -> Submission:
        """Check the answers of a parsed envelope, then apply the rules."""
        package = self.choose(envelope["questionnaire"], envelope.get("ruleset"))
        answers, errors = package.questionnaire.validate(envelope["answers"])
        if errors:
            # Answer problems are keyed by linkId; a non-object is keyed "answers".
            raise ValidationProblem(errors)
        return self._submission(package, answers, envelope["patient_ref"], catalog)

    def _fhir_package(self, resource: Mapping[str, object]) -> Package:
        """The default package of the questionnaire version a QuestionnaireResponse names.

        A reference to no served version falls back to the default questionnaire,
        whose reader then reports the ``questionnaire`` field.
        """
        reference = resource.get("questionnaire")
        if isinstance(reference, str) and "|" in reference:
            url, _, version = reference.rpartition("|")
            package = self.rulebook.for_canonical(url, version)
            if package is not None:
                return package
        return self.rulebook.default

    def check_fhir_submission(self, resource: Mapping[str, object], catalog: Catalog) -> Submission:
        """Read a FHIR QuestionnaireResponse, check its answers as native ones, apply the rules."""
        package = self._fhir_package(resource)
        questionnaire = package.questionnaire
        answers, errors = answers_from_questionnaire_response(resource, questionnaire)
        if errors:
            # Reported alone: an item left out for a FHIR error would otherwise also
            # be called missing, or make a later item look wrongly asked.
            raise ValidationProblem(errors)
        clean, errors = questionnaire.validate(answers)
        if errors:
            raise ValidationProblem(errors)
        return self._submission(package, clean, None, catalog, source=resource)

    def record(self, submission: Submission, key: Principal) -> Screening:
        """The screening a submission makes, as it would be stored (not stored here)."""
        package = submission.package
        questionnaire, ruleset = package.questionnaire, package.ruleset
        return Screening(
            id=secrets.token_hex(16),
            created_at=datetime.now(UTC),
            created_by=key.name,
            patient_ref=submission.patient_ref,
            language=submission.language,
            questionnaire=QuestionnaireRef(
                questionnaire.id, questionnaire.version, questionnaire.sha256
            ),
            ruleset=RulesetRef(ruleset.id, ruleset.version, ruleset.sha256),
            review_status="pending",
            answers=submission.answers,
            answers_sha256=json_digest(submission.answers),
            result=submission.result,
            source=submission.source,
        )

    # --- storing --------------------------------------------------------------------

    def create(
        self,
        key: Principal,
        check: Callable[[], Submission],
        idempotency: tuple[str, str] | None,
        render: Callable[[Screening], str],
    ) -> Created:
        """Store a screening; ``check()`` builds the Submission, ``render`` its response body.

        With ``idempotency`` (the Idempotency-Key and the request's fingerprint), a
        repeat replays the first response and stores nothing new.
        """
        store = self.store
        scope = None
        if idempotency is not None:
            idempotency_key, fingerprint = idempotency
            claim = store.idempotency.claim(key.name, idempotency_key, fingerprint)
            if claim.state == "mismatch":
                raise ValidationProblem(
                    {"Idempotency-Key": ["Already used with a different request body."]},
                    "This Idempotency-Key was used with a different request body.",
                )
            if claim.state == "in_flight":
                raise _in_flight()
            if claim.state == "replay":
                assert claim.response_body is not None and claim.screening_id is not None
                stored = store.screenings.get(claim.screening_id)
                language = stored.language if stored is not None else "en"
                return Created(claim.screening_id, claim.response_body, language, replayed=True)
            assert claim.token is not None
            scope = (key.name, idempotency_key, claim.token)
        try:
            record = self.record(check(), key)
            body = render(self.clock.with_review_times(record, record.created_at))
            deliveries = self.notifier.deliveries(CREATED, record, "pending", record.created_at)
            store.screenings.insert(
                record,
                idempotency=scope,
                response=(201, body),
                deliveries=deliveries,
                actor=key.actor_id,
            )
        except ClaimLost:
            # A retry took this stalled request's claim over and now answers for the key.
            raise _in_flight() from None
        except BaseException:
            # Free the key so a corrected retry runs afresh (only if this request still holds it).
            if scope is not None:
                store.idempotency.release(*scope)
            raise
        record_outcome(record.outcome)
        for shadow in record.result.shadow:
            if shadow.outcome != record.outcome:
                record_shadow_disagreement(shadow.ruleset.id, shadow.ruleset.version)
        return Created(record.id, body, record.language)

    # --- reading --------------------------------------------------------------------

    def read(self, screening_id: str, key: Principal) -> Screening:
        """One screening with its review history; 404 for a portal key that did not create it."""
        record = self.store.screenings.get(screening_id) if _may_exist(screening_id) else None
        if record is None or (key.role == "portal" and record.created_by != key.name):
            raise _not_found()
        self.store.audit.record(key.actor_id, "read", [screening_id])
        return self.clock.with_review_times(record, datetime.now(UTC))

    def list(self, params: Mapping[str, Any], key: Principal) -> Page:
        """A page of the clinician list, newest first or in triage order (``sort``), from
        parsed query parameters."""
        # Any package's outcome: the list holds screenings every package decided.
        outcomes = self.rulebook.outcomes
        if params["outcome"] is not None and params["outcome"] not in outcomes:
            raise ValidationProblem({"outcome": [f"Must be one of: {', '.join(outcomes)}."]})
        triage = params.get("sort") == "triage"
        after: Position | None = None
        if params["cursor"] is not None:
            try:
                after = (
                    decode_triage_cursor(params["cursor"])
                    if triage
                    else decode_cursor(params["cursor"])
                )
            except CursorError:
                raise ValidationProblem(
                    {"cursor": ["Not a cursor from this list in this order."]}
                ) from None
        if (
            params["created_from"] is not None
            and params["created_to"] is not None
            and params["created_from"] > params["created_to"]
        ):
            raise ValidationProblem({"created_to": ["Must not be before created_from."]})
        self._check_ruleset_filter(params["ruleset"], params["ruleset_version"])
        filters = ListFilters(
            outcome=params["outcome"],
            review_status=params["review_status"],
            patient_ref=params["patient_ref"],
            created_from=params["created_from"],
            created_to=params["created_to"],
            ruleset_id=params["ruleset"],
            ruleset_version=params["ruleset_version"],
        )
        rows, position = self.store.screenings.page(
            filters, params["limit"], after, self.clock.order if triage else None
        )
        self.store.audit.record(key.actor_id, "list", [row.id for row in rows])
        now = datetime.now(UTC)
        timed = [self.clock.with_review_times(row, now) for row in rows]
        if position is None:
            return Page(timed, None)
        if len(position) == 3:
            return Page(timed, encode_triage_cursor(*position))
        return Page(timed, encode_cursor(*position))

    def _check_ruleset_filter(self, ruleset_id: str | None, version: str | None) -> None:
        """A 422 unless the list's ruleset filter names a loaded package (any status,
        retired ones included) or, with no version, a loaded ruleset id; or rules no longer
        loaded that decided stored screenings (so that those can still be listed)."""
        if ruleset_id is None:
            if version is not None:
                raise ValidationProblem({"ruleset_version": ["Give ruleset with it."]})
            return
        versions = [p.version for p in self.rulebook.sorted_packages() if p.id == ruleset_id]
        loaded = bool(versions) and (version is None or version in versions)
        if loaded or self.store.screenings.decided_by_ruleset(ruleset_id, version):
            return
        if not versions:
            known = sorted({p.id for p in self.rulebook.packages})
            raise ValidationProblem({"ruleset": [f"Must be one of: {', '.join(known)}."]})
        raise ValidationProblem({"ruleset_version": [f"Must be one of: {', '.join(versions)}."]})

    # --- reviewing ------------------------------------------------------------------

    def review(self, screening_id: str, note: str | None, key: Principal) -> Screening:
        """Mark a screening reviewed with an optional note; return it as stored now.

        The ``screening.reviewed`` event is recorded in the review's own transaction.
        """
        if not _may_exist(screening_id):
            raise _not_found()
        now = datetime.now(UTC)
        deliveries: list[NewDelivery] = []
        if self.notifier.wants(REVIEWED):
            # What the event says of the screening never changes once it is stored.
            current = self.store.screenings.get(screening_id)
            if current is None:
                raise _not_found()
            deliveries = self.notifier.deliveries(REVIEWED, current, "reviewed", now)
        added = self.store.screenings.add_review(
            screening_id,
            key.display_name,
            note,
            now,
            deliveries,
            by_id=key.actor_id,
        )
        if not added:
            raise _not_found()
        record = self.store.screenings.get(screening_id)
        assert record is not None
        return self.clock.with_review_times(record, datetime.now(UTC))

    # --- audit and operations -------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        screening_ids: Sequence[str] = (),
        sid: str | None = None,
    ) -> None:
        """Record an action with no screening of its own, such as signing in (with the
        identity provider's session ``sid`` where known)."""
        self.store.audit.record(actor, action, screening_ids, sid)

    def database_answers(self) -> bool:
        """Whether the database answers a trivial query (the reason, if not, goes to the log)."""
        try:
            self.store.ping()
        except SQLAlchemyError:
            logger.warning("readiness: the database did not answer", exc_info=True)
            return False
        return True

    def upgrade_database(self, revision: str = "head") -> None:
        """Apply the schema migrations up to ``revision``."""
        self.store.upgrade(revision)

    def purge(self, before: datetime, actor: str) -> int:
        """Delete screenings created before ``before`` (audited); return how many."""
        return self.store.screenings.purge(before, actor)
