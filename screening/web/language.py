"""The language a request asks for, and the texts in it.

An explicit ``?lang=`` wins, then Accept-Language (RFC 9110, section 12.5.4), then
English; an unsupported language never fails a request. The header is read here rather
than with Werkzeug's ``best_match``: a range naming a language exactly decides its weight
before a regional one, and equal weights go to the range listed first.
"""

from __future__ import annotations

import re

from flask import request

from screening import extension
from screening.rules.i18n import DEFAULT
from screening.rules.i18n import SUPPORTED
from screening.rules.i18n import Catalog

# Real Accept-Language headers are a few dozen characters; a longer one is not
# worth parsing on every request.
_MAX_ACCEPT_LANGUAGE = 512

# RFC 9110 section 12.5.4: a language range is "*" or 1-8 letters, then
# "-"-separated subtags of 1-8 letters or digits (RFC 4647).
_LANGUAGE_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
# The weight: "q=" then 0 to 1 with at most three decimals ("q" is case-insensitive).
_WEIGHT = re.compile(r"[qQ]=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


def catalog(hint: str | None = None) -> Catalog:
    """The texts in the language this request asks for.

    ``?lang=`` wins, then Accept-Language; ``hint`` (a language named inside the body,
    such as a QuestionnaireResponse's ``language``) counts only when the request has no
    Accept-Language at all (ehr-v1.md). Anything unsupported falls back to English.
    """
    header = request.headers.get("Accept-Language")
    return extension.catalogs()[
        negotiate(request.args.get("lang"), hint if header is None else header)
    ]


def _weight(parameters: list[str]) -> float | None:
    """The q-value of one Accept-Language element; None when it is malformed."""
    if not parameters:
        return 1.0
    if len(parameters) > 1:
        return None
    match = _WEIGHT.fullmatch(parameters[0].strip())
    return float(match.group(1)) if match else None


def _from_accept_language(header: str) -> str | None:
    """The supported language the header prefers, or None when it accepts none.

    For each supported language, a range naming it exactly ("es") decides its
    weight; otherwise the best range with that primary tag ("es-MX"); otherwise
    "*". Weight 0 means "not acceptable". Equal weights go to the range listed
    first. A malformed element is skipped rather than failing the request.
    """
    exact: dict[str, tuple[float, int]] = {}
    prefixed: dict[str, tuple[float, int]] = {}
    wildcard: tuple[float, int] | None = None
    for position, element in enumerate(header.split(",")):
        tag, *parameters = element.split(";")
        tag = tag.strip()
        if not tag:
            # The list grammar allows empty elements ("es,,en").
            continue
        weight = _weight(parameters)
        if weight is None or not _LANGUAGE_RANGE.fullmatch(tag):
            continue
        if tag == "*":
            wildcard = wildcard or (weight, position)
            continue
        primary = tag.split("-", 1)[0].lower()
        if primary not in SUPPORTED:
            continue
        if tag.lower() == primary:
            exact.setdefault(primary, (weight, position))
        elif primary not in prefixed or weight > prefixed[primary][0]:
            prefixed[primary] = (weight, position)
    best: tuple[float, int, int] | None = None
    choice = None
    for rank, language in enumerate(SUPPORTED):
        weight_position = exact.get(language) or prefixed.get(language) or wildcard
        if weight_position is None or weight_position[0] <= 0:
            continue
        # Higher weight first, then the earlier range, then SUPPORTED order (for "*").
        key = (weight_position[0], -weight_position[1], -rank)
        if best is None or key > best:
            best, choice = key, language
    return choice


def negotiate(lang_param: str | None, accept_language: str | None) -> str:
    """Pick the language of a response: a supported ``?lang=`` wins, then Accept-Language.

    ``lang_param`` may be a plain or regional tag ("es", "es-MX", "es_MX");
    one the service does not speak is ignored in favour of the header. Without
    a usable choice the answer is English.
    """
    if lang_param:
        tag = lang_param.strip().replace("_", "-")
        if tag != "*" and _LANGUAGE_RANGE.fullmatch(tag):
            primary = tag.split("-", 1)[0].lower()
            if primary in SUPPORTED:
                return primary
    if accept_language and len(accept_language) <= _MAX_ACCEPT_LANGUAGE:
        return _from_accept_language(accept_language) or DEFAULT
    return DEFAULT
