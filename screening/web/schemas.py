"""Request schemas (marshmallow): body envelopes and list query parameters.

Answers themselves are checked against the questionnaire data (see
``questionnaire.py``); these schemas check what surrounds them. Created once at
module level and reused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validate
from marshmallow import validates_schema

from screening.records import CardFeedbackEntry
from screening.rules.questionnaire import MAX_NAMED_UNKNOWN
from screening.rules.questionnaire import may_name
from screening.services.problems import ValidationProblem

PATIENT_REF = validate.Regexp(
    # \Z, not $: Python's $ also matches before a final newline.
    r"^[A-Za-z0-9._:-]{1,64}\Z",
    error="Must be 1 to 64 characters from A-Z a-z 0-9 . _ : - (an opaque id, never a name).",
)
REVIEW_STATUSES = ("pending", "reviewed")
#: The list's orders: newest first (the default), or the triage worklist.
LIST_ORDERS = ("newest", "triage")
NOTE_LIMIT = 2000


def _storable_text(text: str) -> None:
    """Refuse what no database stores as text: NUL, and unpaired surrogates.

    JSON bodies are checked as they are read (``bodies.json_object``); a form (the
    review page's note) can carry a NUL as ``%00`` too, and reaches the same schema.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must not contain NUL characters or unpaired surrogates.") from None
    if "\x00" in text:
        raise ValidationError("Must not contain NUL characters or unpaired surrogates.")


def _utc_representable(moment: datetime) -> None:
    """Refuse a moment UTC cannot hold (0001-01-01T00:00+01:00): it is compared in UTC."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError("Must be from 0001-01-01 to 9999-12-31 in UTC.") from None


class _Strict(Schema):
    """Unknown fields are errors, named only when that repeats nothing odd.

    Marshmallow's own ``unknown = RAISE`` keys an error by each unknown name, so a
    3 KB name came back whole. Here a name is repeated only when it is shaped like one
    of ours (``may_name``) and while the list stays short; the rest are counted.
    """

    class Meta:
        unknown = EXCLUDE

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _no_unknown_fields(self, _data: Any, original: Any, **_kwargs: Any) -> None:
        if not isinstance(original, dict):
            return
        known = {field.data_key or name for name, field in self.load_fields.items()}
        unknown = [name for name in original if name not in known]
        if not unknown:
            return
        named = [name for name in unknown if isinstance(name, str) and may_name(name)]
        named = named[:MAX_NAMED_UNKNOWN]
        errors: dict[str, list[str]] = {name: ["Unknown field."] for name in named}
        if len(unknown) > len(named):
            errors["_schema"] = [
                f"{len(unknown) - len(named)} more field(s) are not taken here; "
                f"the fields are: {', '.join(sorted(known))}."
            ]
        raise ValidationError(errors)


class QuestionnaireRefSchema(_Strict):
    """``{"id": ..., "version": ...}`` naming the questionnaire the answers are for."""

    id = fields.String(required=True)
    version = fields.String(required=True)


class RulesetRefSchema(_Strict):
    """``{"id": ..., "version": ...}`` naming the ruleset to apply (``version`` optional)."""

    id = fields.String(required=True)
    version = fields.String(load_default=None, allow_none=True)


class ScreeningRequestSchema(_Strict):
    """The body of ``POST /v1/screenings`` and ``POST /v1/evaluate``."""

    # A Raw field: the answers are checked item by item against the questionnaire.
    answers = fields.Raw(required=True)
    patient_ref = fields.String(load_default=None, allow_none=True, validate=PATIENT_REF)
    questionnaire = fields.Nested(QuestionnaireRefSchema, load_default=None, allow_none=True)
    ruleset = fields.Nested(RulesetRefSchema, load_default=None, allow_none=True)


class ReviewRequestSchema(_Strict):
    """The body of ``POST /v1/screenings/{id}/review``."""

    note = fields.String(
        load_default=None,
        allow_none=True,
        validate=[
            validate.Length(max=NOTE_LIMIT, error=f"Must be at most {NOTE_LIMIT} characters."),
            _storable_text,
        ],
    )


class ListQuerySchema(Schema):
    """The query of ``GET /v1/screenings``."""

    class Meta:
        # Extra query parameters (cache busters, tracking) are ignored, not errors.
        unknown = EXCLUDE

    # Checked against the ruleset's outcome codes by the service.
    outcome = fields.String(load_default=None)
    review_status = fields.String(load_default=None, validate=validate.OneOf(REVIEW_STATUSES))
    patient_ref = fields.String(load_default=None, validate=PATIENT_REF)
    created_from = fields.AwareDateTime(
        load_default=None, format="iso", validate=_utc_representable
    )
    created_to = fields.AwareDateTime(load_default=None, format="iso", validate=_utc_representable)
    # Checked against the loaded rule packages by the service.
    ruleset = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    ruleset_version = fields.String(load_default=None, validate=validate.Length(min=1, max=32))
    limit = fields.Integer(
        load_default=20,
        strict=False,
        validate=validate.Range(min=1, max=100, error="Must be from 1 to 100."),
    )
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))
    sort = fields.String(load_default="newest", validate=validate.OneOf(LIST_ORDERS))


#: CDS Hooks feedback: entries per request, and the longest comment kept.
MAX_FEEDBACK = 50
MAX_COMMENT = 2000
MAX_SUGGESTIONS = 20
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


#: What a printable string may not hold: control characters (C0, DEL, C1) and the
#: invisible format characters that could disguise one text as another (soft hyphen,
#: zero-width and direction marks, line and paragraph separators, word joiners and
#: isolates, the byte order mark, interlinear annotation). openapi.yaml gives every
#: printable field this as its ``pattern``, so the contract admits exactly what is taken.
#: (Unpaired surrogates, which no JSON Schema pattern can name, are refused in any body.)
NOT_PRINTABLE = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    r"\ufeff\ufff9-\ufffb"
)
#: The ``pattern`` of a printable field in openapi.yaml (its lengths are the field's own).
PRINTABLE_PATTERN = f"^[^{NOT_PRINTABLE}]*$"
_PRINTABLE = re.compile(f"[^{NOT_PRINTABLE}]*")


def printable(most: int, what: str = "a string") -> Callable[[str], None]:
    """A non-empty string of printable characters, at most ``most`` long."""

    def check(value: str) -> None:
        if not 0 < len(value) <= most or not _PRINTABLE.fullmatch(value):
            raise ValidationError(f"Must be {what}: printable, 1 to {most} characters.")

    return check


class Rfc3339(fields.Field[datetime]):
    """An RFC 3339 date-time with its offset (FHIR's ``instant``), as an aware datetime.

    Stricter than marshmallow's ISO parsing, which takes a space for the ``T``, a time
    without seconds and no offset at all.
    """

    default_error_messages = {  # noqa: RUF012 (marshmallow's own class attribute)
        "invalid": "Must be a date-time with a time zone (RFC 3339)."
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not _RFC3339.match(value):
            raise self.make_error("invalid")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None
        _utc_representable(moment)
        return moment


class _Open(Schema):
    """A CDS Hooks object: the fields this service reads are checked, the rest (a hook
    request carries many the service has no use for) are left out."""

    class Meta:
        unknown = EXCLUDE


class CodingSchema(_Strict):
    """A FHIR Coding, as CDS Hooks feedback's ``overrideReason.reason``."""

    code = fields.String(validate=printable(1024))
    system = fields.String(validate=printable(1024))
    display = fields.String(validate=printable(1024))


class OverrideReasonSchema(_Open):
    """Why a clinician overrode a card: a coded reason, a comment, both or neither (as
    ``openapi.yaml`` says, other fields are taken and not kept)."""

    reason = fields.Nested(CodingSchema)
    userComment = fields.String(  # noqa: N815 (the CDS Hooks name)
        validate=[
            validate.Length(
                max=MAX_COMMENT, error=f"Must be a string of at most {MAX_COMMENT} characters."
            ),
            _storable_text,
        ]
    )


class SuggestionSchema(_Open):
    """An accepted suggestion: its ``id`` is kept, anything else about it is not."""

    id = fields.String(required=True, validate=printable(255))


class FeedbackEntrySchema(_Strict):
    """One CDS Hooks 2.0 feedback entry, loaded as the row that stores it."""

    card = fields.String(required=True, validate=printable(64, "the uuid of the card"))
    outcome = fields.String(
        required=True,
        validate=validate.OneOf(
            ("accepted", "overridden"), error="Must be accepted or overridden."
        ),
    )
    outcomeTimestamp = Rfc3339(required=True)  # noqa: N815 (the CDS Hooks name)
    acceptedSuggestions = fields.List(  # noqa: N815
        fields.Nested(SuggestionSchema),
        load_default=list,
        validate=validate.Length(
            max=MAX_SUGGESTIONS, error=f"Must list at most {MAX_SUGGESTIONS} suggestions."
        ),
    )
    overrideReason = fields.Nested(OverrideReasonSchema)  # noqa: N815
    # CDS Hooks lets a client add extensions; they are accepted (any JSON) and not kept.
    extension = fields.Raw(allow_none=True)

    @validates_schema
    def _reason_only_when_overridden(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if "overrideReason" in data and data.get("outcome") == "accepted":
            raise ValidationError({"overrideReason": ["Only for an overridden card."]})

    @post_load
    def _row(self, data: dict[str, Any], **_kwargs: Any) -> CardFeedbackEntry:
        override = data.get("overrideReason") or {}
        return {
            "card_uuid": data["card"],
            "outcome": data["outcome"],
            "outcome_at": data["outcomeTimestamp"],
            "accepted_suggestions": data["acceptedSuggestions"],
            "override_reason": override.get("reason") or None,
            "user_comment": override.get("userComment") or None,
        }


#: The one CDS hook this service answers.
CDS_HOOK = "patient-view"


class HookContextSchema(_Open):
    """A patient-view hook's ``context``: the patient is all this service needs."""

    patientId = fields.String(required=True, validate=printable(255))  # noqa: N815


class FhirAuthorizationSchema(_Open):
    """The EHR's token for its FHIR server (sent only to one of the client's servers)."""

    access_token = fields.String(required=True, validate=printable(8192))


class HookRequestSchema(_Open):
    """The body of ``POST /cds-services/{id}`` (CDS Hooks 2.0)."""

    hook = fields.String(
        required=True,
        validate=validate.Equal(CDS_HOOK, error=f"This service answers the {CDS_HOOK} hook."),
    )
    hookInstance = fields.String(required=True, validate=printable(255))  # noqa: N815
    context = fields.Nested(HookContextSchema, required=True)
    prefetch = fields.Dict(load_default=None, allow_none=True)
    fhirServer = fields.String(  # noqa: N815
        load_default=None, allow_none=True, validate=printable(2048, "the FHIR server's base URL")
    )
    fhirAuthorization = fields.Nested(  # noqa: N815
        FhirAuthorizationSchema, load_default=None, allow_none=True
    )


class FeedbackRequestSchema(_Open):
    """The body of ``POST /cds-services/{id}/feedback``: its entries, as rows."""

    feedback = fields.List(
        fields.Nested(FeedbackEntrySchema, error_messages={"type": "Must be an object."}),
        required=True,
        validate=validate.Length(
            min=1, max=MAX_FEEDBACK, error=f"Must be a list of 1 to {MAX_FEEDBACK} entries."
        ),
    )


screening_request = ScreeningRequestSchema()
review_request = ReviewRequestSchema()
list_query = ListQuerySchema()
feedback_request = FeedbackRequestSchema()
hook_request = HookRequestSchema()


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """``schema.load(data)``, or a 422 problem naming each field at fault."""
    try:
        return dict(schema.load(data))
    except ValidationError as exc:
        raise ValidationProblem(messages_by_field(exc.messages)) from None


def messages_by_field(messages: Any) -> dict[str, list[str]]:
    """Flatten marshmallow's nested messages into ``{"field.sub": [messages]}``."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                # Marshmallow's key for errors of an object as a whole: the object's own name.
                if key == "_schema":
                    walk(prefix, inner)
                else:
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            flat.setdefault(prefix or "body", []).extend(str(v) for v in value)
        else:
            flat.setdefault(prefix or "body", []).append(str(value))

    walk("", messages)
    return flat
