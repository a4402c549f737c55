"""Request schemas (marshmallow): body envelopes and list query parameters.

Answers themselves are checked against the questionnaire data (see
``questionnaire.py``); these schemas check what surrounds them. Created once at
module level and reused.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE
from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

from screening.services.problems import ValidationProblem

PATIENT_REF = validate.Regexp(
    # \Z, not $: Python's $ also matches before a final newline.
    r"^[A-Za-z0-9._:-]{1,64}\Z",
    error="Must be 1 to 64 characters from A-Z a-z 0-9 . _ : - (an opaque id, never a name).",
)
OUTCOMES = (
    "urgent_care",
    "see_primary_care",
    "continue_conservative_care",
    "discuss_with_specialist",
)
REVIEW_STATUSES = ("pending", "reviewed")
#: The list's orders: newest first (the default), or the triage worklist.
LIST_ORDERS = ("newest", "triage")
NOTE_LIMIT = 2000


def _utc_representable(moment: datetime) -> None:
    """Refuse a moment UTC cannot hold (0001-01-01T00:00+01:00): it is compared in UTC."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError("Must be from 0001-01-01 to 9999-12-31 in UTC.") from None


class _Strict(Schema):
    """Unknown fields are errors, named by field."""

    class Meta:
        unknown = RAISE


class QuestionnaireRefSchema(_Strict):
    """``{"id": ..., "version": ...}`` naming the questionnaire the answers are for."""

    id = fields.String(required=True)
    version = fields.String(required=True)


class ScreeningRequestSchema(_Strict):
    """The body of ``POST /v1/screenings`` and ``POST /v1/evaluate``."""

    # A Raw field: the answers are checked item by item against the questionnaire.
    answers = fields.Raw(required=True)
    patient_ref = fields.String(load_default=None, allow_none=True, validate=PATIENT_REF)
    questionnaire = fields.Nested(QuestionnaireRefSchema, load_default=None, allow_none=True)


class ReviewRequestSchema(_Strict):
    """The body of ``POST /v1/screenings/{id}/review``."""

    note = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=NOTE_LIMIT, error=f"Must be at most {NOTE_LIMIT} characters."),
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
    limit = fields.Integer(
        load_default=20,
        strict=False,
        validate=validate.Range(min=1, max=100, error="Must be from 1 to 100."),
    )
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))
    sort = fields.String(load_default="newest", validate=validate.OneOf(LIST_ORDERS))


screening_request = ScreeningRequestSchema()
review_request = ReviewRequestSchema()
list_query = ListQuerySchema()


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
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            flat.setdefault(prefix or "body", []).extend(str(v) for v in value)
        else:
            flat.setdefault(prefix or "body", []).append(str(value))

    walk("", messages)
    return flat
