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
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates_schema

from screening.rules.questionnaire import MAX_NAMED_UNKNOWN
from screening.rules.questionnaire import may_name
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
