"""A screening as every layer reads it: frozen, typed, its times kept as datetimes.

The services make these and the store keeps them; the API's serializers
(``screening.web.views``), the review pages, the FHIR Bundle, webhook events and CDS
cards read their fields, and only a serializer writes a time as RFC 3339. This module
sits beneath the layers (like ``timestamps``), as the storage and FHIR layers below the
services read and return these types too.

The result's ``summary`` and ``trace`` are the JSON documents the rules engine wrote
(``screening.rules.results`` names their fields): the API hands them out as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import NotRequired
from typing import Protocol
from typing import TypedDict

from screening.rules.questionnaire import Answers
from screening.rules.results import ClinicianSummary
from screening.rules.results import PatientSummary
from screening.rules.results import RulesetName
from screening.rules.results import Summary
from screening.rules.results import TraceEntry

#: A JSON document as stored (the summary, the trace, a submitted FHIR resource).
Document = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class QuestionnaireRef:
    """The questionnaire version a screening was answered on."""

    id: str
    version: str
    #: Empty where it was not read (a list row).
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class RulesetRef:
    """The rules that decided a screening, as they were then."""

    id: str
    version: str
    sha256: str

    def as_json(self) -> RulesetName:
        return {"id": self.id, "version": self.version, "sha256": self.sha256}


class ShadowJson(TypedDict):
    """A shadow ruleset's outcome as JSON: in the ``result`` column and in the API alike."""

    ruleset: RulesetName
    outcome: str
    decided_by: str
    matched_rules: list[str]


@dataclass(frozen=True, slots=True)
class ShadowOutcome:
    """A shadow ruleset's result beside the deciding one (never shown to a patient)."""

    ruleset: RulesetRef
    outcome: str
    decided_by: str
    matched_rules: tuple[str, ...]

    def as_json(self) -> ShadowJson:
        return {
            "ruleset": self.ruleset.as_json(),
            "outcome": self.outcome,
            "decided_by": self.decided_by,
            "matched_rules": list(self.matched_rules),
        }

    @classmethod
    def from_json(cls, document: ShadowJson) -> ShadowOutcome:
        ruleset = document["ruleset"]
        return cls(
            RulesetRef(ruleset["id"], ruleset["version"], ruleset["sha256"]),
            document["outcome"],
            document["decided_by"],
            tuple(document["matched_rules"]),
        )


@dataclass(frozen=True, slots=True)
class Result:
    """What the rules gave: the outcome, the rule that decided it, every rule that held,
    the patient and clinician summaries, the trace, and any shadow rulesets' outcomes."""

    outcome: str
    decided_by: str
    matched_rules: tuple[str, ...]
    summary: Summary
    trace: Sequence[TraceEntry]
    shadow: tuple[ShadowOutcome, ...] = ()

    @property
    def clinician(self) -> ClinicianSummary:
        """The clinician summary (findings, notes, sources, the card's words)."""
        return self.summary["clinician"]

    @property
    def patient(self) -> PatientSummary:
        """The patient summary, in the language the screening was answered in."""
        return self.summary["patient"]


@dataclass(frozen=True, slots=True)
class Review:
    """One review of a screening: when, by whom, and the note if any."""

    at: datetime
    #: The display name of who reviewed (a person's, or a key's or client's name).
    by: str
    note: str | None
    #: Who, as the audit log names them; None for reviews made before people signed in.
    by_id: str | None = None


@dataclass(frozen=True, slots=True)
class Screening:
    """A stored screening (or one evaluated but not stored), with its review history.

    ``review_due_at`` and ``review_overdue`` are worked out when it is read (the triage
    clock's ``with_review_times``), never stored.
    """

    id: str
    created_at: datetime
    #: The name of the caller that stored it (a portal's key, say).
    created_by: str
    patient_ref: str | None
    language: str
    questionnaire: QuestionnaireRef
    ruleset: RulesetRef
    review_status: str
    answers: Answers
    answers_sha256: str | None
    result: Result
    #: The document the answers came in, when not native JSON (a FHIR QuestionnaireResponse).
    source: Document | None = None
    reviews: tuple[Review, ...] = ()
    review_due_at: datetime | None = None
    review_overdue: bool = False

    @property
    def outcome(self) -> str:
        """The outcome code."""
        return self.result.outcome

    @property
    def decided_by(self) -> str:
        """The id of the rule that decided the outcome."""
        return self.result.decided_by


@dataclass(frozen=True, slots=True)
class ListRow:
    """One screening as the clinician list reads it: enough to triage, read from the
    row's columns and two fields of its result, without answers or trace."""

    id: str
    created_at: datetime
    created_by: str
    patient_ref: str | None
    language: str
    questionnaire: QuestionnaireRef
    ruleset: RulesetRef
    outcome: str
    review_status: str
    decided_by: str
    card_summary: str
    review_due_at: datetime | None = None
    review_overdue: bool = False


class ScreeningFacts(Protocol):
    """What a webhook event says of a screening (a ``Screening``, a ``ListRow``, or the
    overdue scan's ``EventFacts``)."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def created_by(self) -> str: ...

    @property
    def patient_ref(self) -> str | None: ...

    @property
    def outcome(self) -> str: ...

    @property
    def decided_by(self) -> str: ...

    @property
    def ruleset(self) -> RulesetRef: ...


@dataclass(frozen=True, slots=True)
class EventFacts:
    """A screening as the overdue scan reads it: what its event says, and no more."""

    id: str
    created_at: datetime
    created_by: str
    patient_ref: str | None
    outcome: str
    decided_by: str
    ruleset: RulesetRef


@dataclass(frozen=True, slots=True)
class CardFeedback:
    """An EHR's feedback on a CDS card that described a screening."""

    caller: str
    #: ``accepted`` or ``overridden``.
    outcome: str
    outcome_at: datetime
    #: The override reason as the EHR coded it (``code``, ``display``, ...), if given.
    override_reason: Document | None
    user_comment: str | None


class NewDelivery(TypedDict):
    """An event on its way to one endpoint, as the outbox first keeps it."""

    event_id: str
    event_type: str
    endpoint: str
    screening_id: str
    #: The signed body, as sent.
    payload: str
    status: str
    attempts: int
    created_at: datetime
    scheduled_at: datetime
    next_attempt_at: datetime


class AttemptOutcome(TypedDict, total=False):
    """What one delivery attempt changes of its outbox row."""

    status: str
    delivered_at: datetime
    next_attempt_at: datetime
    last_result: str


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """A delivery as an operator lists it: where it stands, without its payload."""

    id: int
    event_id: str
    event_type: str
    endpoint: str
    screening_id: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_result: str | None
    delivered_at: datetime | None


class AuditEntry(TypedDict):
    """Who did what to which screening, and when (ids and names only)."""

    id: int
    at: datetime
    actor: str
    action: str
    screening_id: str | None
    #: The identity provider's session, on signing in and out through it.
    sid: str | None


class CardSource(TypedDict):
    label: str


class CardLink(TypedDict):
    label: str
    url: str
    type: str


class Card(TypedDict):
    """A CDS Hooks card: the result's words for the EHR, linking to the review pages."""

    uuid: str
    summary: str
    indicator: str
    detail: str
    source: CardSource
    #: Left out without ``SCREENING_PUBLIC_URL`` (a link must be absolute).
    links: NotRequired[list[CardLink]]


class ShownCard(TypedDict):
    """A card as kept once shown: who was shown it, for which patient and screening."""

    uuid: str
    shown_at: datetime
    caller: str
    hook_instance: str
    patient_id: str
    screening_id: str | None
    outcome: str
    indicator: str
    summary: str


class CardFeedbackEntry(TypedDict):
    """One CDS Hooks feedback entry as read from the EHR (before it is kept)."""

    card_uuid: str
    outcome: str
    outcome_at: datetime
    accepted_suggestions: list[object]
    override_reason: Document | None
    user_comment: str | None
