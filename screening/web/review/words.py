"""The review pages' words: outcomes, findings, answers and the trace as a clinician reads them."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

from screening import extension
from screening.records import CardFeedback
from screening.records import ListRow
from screening.records import Result
from screening.records import RulesetRef
from screening.records import Screening
from screening.rules.questionnaire import Item
from screening.rules.results import Finding as FindingJson
from screening.rules.results import TraceEntry
from screening.rules.rulebook import Package
from screening.rules.summaries import states_a_finding
from screening.web.schemas import NOTE_LIMIT

# The condition language's operators, as a clinician would read them after
# "Needs the answer ...".
_OPERATOR_WORDS = {
    "equals": "to be",
    "one_of": "to be one of",
    "contains_any": "to include any of",
    "less_than": "to be less than",
    "at_most": "to be at most",
    "greater_than": "to be more than",
    "at_least": "to be at least",
}


@dataclass(frozen=True, slots=True)
class OutcomeView:
    """An outcome as the pages show it."""

    code: str
    label: str
    indicator: str

    @property
    def urgent(self) -> bool:
        """Whether the rules data marks this outcome critical (help needed today)."""
        return self.indicator == "critical"


@dataclass(frozen=True, slots=True)
class Citation:
    """A source a finding rests on."""

    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A matched rule with its clinician text and sources."""

    rule: str
    title: str
    text: str
    sources: tuple[Citation, ...]
    deciding: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """One answered question in words."""

    question: str
    words: str


@dataclass(frozen=True, slots=True)
class AnswerGroup:
    """The answers of one questionnaire section."""

    title: str
    answers: tuple[Answer, ...]


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One comparison the rules made, in words."""

    question: str
    test: str
    answer: str
    held: bool


@dataclass(frozen=True, slots=True)
class TraceRule:
    """One rule of the trace."""

    rule: str
    title: str
    matched: bool
    steps: tuple[TraceStep, ...]


def words_package(ruleset: RulesetRef) -> Package:
    """The package whose words describe a screening decided by ``ruleset``: that one
    while loaded, else the default one."""
    return extension.rulebook().package_or_default(ruleset.id, ruleset.version)


def outcome(code: str, package: Package) -> OutcomeView:
    """An outcome code with its label and indicator from the rules data: the package's,
    else any loaded package's that declares the code (a screening whose own package is no
    longer loaded), else the bare code."""
    outcome = package.ruleset.outcomes.get(code) or extension.rulebook().outcomes.get(code)
    if outcome is None:
        return OutcomeView(code, code, "info")
    return OutcomeView(code, outcome.label, outcome.indicator)


def rule_title(rule_id: str, package: Package) -> str:
    """A rule's title, or its id for a rule the loaded ruleset no longer has."""
    for rule in package.ruleset.rules:
        if rule.id == rule_id:
            return rule.title
    return rule_id


def _item(link_id: str, package: Package) -> Item | None:
    """The questionnaire item with this linkId, if the loaded questionnaire has it."""
    return package.questionnaire.by_link_id.get(link_id)


def _question(link_id: str, package: Package) -> str:
    """The question as the patient read it, or its linkId."""
    item = _item(link_id, package)
    return item.text if item is not None else link_id


def _words(link_id: str, value: Any, package: Package) -> str:
    """An answer (or an expected value) in the questionnaire's words."""
    if value is None:
        return "No answer"
    item = _item(link_id, package)
    if item is not None:
        try:
            return item.display(value)
        except KeyError:
            # A code this questionnaire no longer has: show the code itself.
            pass
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def when(moment: datetime) -> str:
    """An aware datetime as "21 Nov 2025, 09:06 UTC"."""
    return moment.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def maybe_when(moment: datetime | None) -> str | None:
    """``when(moment)``, or None for no time."""
    return None if moment is None else when(moment)


@dataclass(frozen=True, slots=True)
class ListEntry:
    """A list row in the words of the rules that decided it."""

    row: ListRow
    outcome: OutcomeView
    received: str
    #: When an urgent screening's review is due, in words.
    due: str | None


def list_entry(row: ListRow) -> ListEntry:
    """A list row with its outcome in its own package's words, and its times in words."""
    return ListEntry(
        row,
        outcome(row.outcome, words_package(row.ruleset)),
        when(row.created_at),
        maybe_when(row.review_due_at),
    )


#: CDS Hooks feedback outcomes in words.
_FEEDBACK_OUTCOMES = {"accepted": "Card accepted", "overridden": "Card overridden"}


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """An EHR's feedback on a card, as the detail page shows it."""

    outcome: str
    by: str
    at: str
    reason: str | None
    comment: str | None


def card_feedback(entries: list[CardFeedback]) -> list[FeedbackEntry]:
    """CDS Hooks feedback entries as the detail page shows them."""
    shown = []
    for entry in entries:
        reason = entry.override_reason or {}
        shown.append(
            FeedbackEntry(
                outcome=_FEEDBACK_OUTCOMES.get(entry.outcome, entry.outcome),
                by=entry.caller,
                at=when(entry.outcome_at),
                reason=reason.get("display") or reason.get("code"),
                comment=entry.user_comment,
            )
        )
    return shown


def _citations(ids: list[str], stored: dict[str, str], package: Package) -> tuple[Citation, ...]:
    """Source ids with their citations: as stored with the result, else from the ruleset."""
    sources = package.ruleset.sources
    citations = []
    for source_id in ids:
        text = stored.get(source_id)
        if text is None:
            source = sources.get(source_id)
            text = source.citation if source is not None else ""
        citations.append(Citation(source_id, text))
    return tuple(citations)


def _findings(
    entries: list[FindingJson], stored: dict[str, str], decided_by: str | None, package: Package
) -> list[Finding]:
    """Stored findings (or notes) with titles and citations; mark the deciding one.

    A screening stored before findings left out a fallback that did not decide
    still lists it; it is left out here too, since it is not true of this screening.
    """
    rules = {rule.id: rule for rule in package.ruleset.rules}
    decided = rules.get(decided_by or "")
    return [
        Finding(
            rule=entry["rule"],
            title=entry.get("title") or rule_title(entry["rule"], package),
            text=entry["text"],
            sources=_citations(entry.get("sources", []), stored, package),
            deciding=entry["rule"] == decided_by,
        )
        for entry in entries
        if decided is None
        or entry["rule"] not in rules
        or states_a_finding(rules[entry["rule"]], decided)
        or rules[entry["rule"]].kind == "note"
    ]


def _answer_groups(answers: Mapping[str, Any], package: Package) -> list[AnswerGroup]:
    """Every answer under its questionnaire section, in questionnaire order."""
    questionnaire = package.questionnaire
    groups = []
    for group in questionnaire.groups:
        rows = tuple(
            Answer(item.text, _words(item.link_id, answers[item.link_id], package))
            for item in questionnaire.items
            if item.group == group.link_id and item.link_id in answers
        )
        if rows:
            groups.append(AnswerGroup(group.text, rows))
    # Answers to items this questionnaire no longer has (an older version).
    other = tuple(
        Answer(link_id, _words(link_id, value, package))
        for link_id, value in answers.items()
        if link_id not in questionnaire.by_link_id
    )
    if other:
        groups.append(AnswerGroup("Other answers", other))
    return groups


def _trace(trace: Sequence[TraceEntry], package: Package) -> list[TraceRule]:
    """The stored trace in words: each rule, each comparison, and whether it held."""
    rules = []
    for entry in trace:
        steps = []
        for step in entry.get("conditions", []):
            link_id = step["linkId"]
            operator = step["operator"]
            if operator == "answered":
                test = "Needs an answer" if step["expected"] else "Needs no answer"
            else:
                words = _OPERATOR_WORDS.get(operator, operator)
                test = f"Needs the answer {words} {_words(link_id, step['expected'], package)}"
            steps.append(
                TraceStep(
                    _question(link_id, package),
                    test,
                    _words(link_id, step["actual"], package),
                    step["held"],
                )
            )
        rules.append(
            TraceRule(
                entry["rule"], rule_title(entry["rule"], package), entry["matched"], tuple(steps)
            )
        )
    return rules


#: A package's release status as the pages say it.
STATUS_WORDS = {
    "draft": "Draft: not used for screenings",
    "shadow": "In shadow: checked beside the rules in use, never shown to patients",
    "active": "In use",
    "retired": "Retired: kept so that older screenings stay readable",
}


@dataclass(frozen=True, slots=True)
class ShadowView:
    """A shadow ruleset's outcome on one screening, where it differs from the one given."""

    ruleset_id: str
    version: str
    outcome: OutcomeView
    decided_by: str
    #: Whether its package is loaded (it has a page to link to).
    loaded: bool


def ruleset_choices() -> list[tuple[str, str]]:
    """The list's ruleset filter: each ruleset id (any version), then each loaded version,
    as (value, label); a value is ``id`` or ``id/version``."""
    packages = extension.rulebook().sorted_packages()
    choices: list[tuple[str, str]] = []
    for package in packages:
        if not any(value == package.id for value, _ in choices):
            choices.append((package.id, f"{package.id}, any version"))
        status = STATUS_WORDS[package.status].split(":")[0].lower()
        choices.append((f"{package.id}/{package.version}", f"{package.describe()} ({status})"))
    return choices


def _differing_shadows(result: Result) -> tuple[list[ShadowView], int]:
    """The shadow outcomes that differ from the screening's, and how many agreed."""
    rulebook = extension.rulebook()
    differing = []
    agreed = 0
    for entry in result.shadow:
        if entry.outcome == result.outcome:
            agreed += 1
            continue
        ruleset = entry.ruleset
        package = rulebook.package(ruleset.id, ruleset.version)
        # No longer loaded: its codes as stored, not another package's words for them.
        shown = ShadowView(
            ruleset.id,
            ruleset.version,
            OutcomeView(entry.outcome, entry.outcome, "info")
            if package is None
            else outcome(entry.outcome, package),
            entry.decided_by if package is None else rule_title(entry.decided_by, package),
            loaded=package is not None,
        )
        differing.append(shown)
    return differing, agreed


def ruleset_context(package: Package) -> dict[str, object]:
    """What a rule package's page shows: status, approval, other versions, changelog, rules."""
    rules = [
        {
            "id": rule.id,
            "title": rule.title,
            "outcome": outcome(rule.outcome, package) if rule.outcome is not None else None,
            # A note that names its outcomes shows them; one that names none goes with all.
            "with_outcomes": [outcome(code, package) for code in rule.with_outcomes],
        }
        for rule in package.ruleset.rules
    ]
    others = [
        other
        for other in extension.rulebook().sorted_packages()
        if other.id == package.id and other.version != package.version
    ]
    return {
        "package": package,
        "status": STATUS_WORDS[package.status],
        "others": others,
        "rules": rules,
    }


def ruleset_notice(ruleset: RulesetRef, package: Package | None) -> str | None:
    """Why the rules that decided a screening (``ruleset``; its ``package``, None when no
    longer loaded) are not what a new one would get, if so."""
    named = f"{ruleset.id} version {ruleset.version}"
    if package is None:
        return f"The rules that worked out this result ({named}) are no longer loaded."
    if package.ruleset.sha256 != ruleset.sha256:
        retired = " They are now retired too." if package.status == "retired" else ""
        return f"The rules of {named} were changed after this result was worked out.{retired}"
    if package.status == "retired":
        return f"The rules that worked out this result ({named}) are now retired."
    return None


def detail_context(screening: Screening) -> dict[str, object]:
    """What the detail page shows, in words, of a screening as a clinician reads it."""
    result = screening.result
    clinician = result.clinician
    stored_sources = {s["id"]: s["citation"] for s in clinician.get("sources", [])}
    ruleset = screening.ruleset
    rulebook = extension.rulebook()
    loaded = rulebook.package(ruleset.id, ruleset.version)
    # Words for a screening whose rules are no longer loaded come from the default package.
    package = loaded or rulebook.default
    shadows, agreed = _differing_shadows(result)
    return {
        "screening": screening,
        "received": when(screening.created_at),
        "outcome": outcome(result.outcome, package),
        "decided_by": rule_title(result.decided_by, package),
        "findings": _findings(clinician["findings"], stored_sources, result.decided_by, package),
        "notes": _findings(clinician.get("notes", []), stored_sources, None, package),
        "key_answers": [
            Answer(_question(entry["linkId"], package), entry["display"])
            for entry in clinician.get("key_answers", [])
        ],
        "answer_groups": _answer_groups(screening.answers, package),
        "patient": result.patient,
        "trace": _trace(result.trace, package),
        "history": [
            {"at": when(review.at), "by": review.by, "note": review.note}
            for review in screening.reviews
        ],
        "due": maybe_when(screening.review_due_at),
        "due_at": screening.review_due_at,
        "overdue": screening.review_overdue,
        "ruleset_known": loaded is not None,
        "ruleset_notice": ruleset_notice(ruleset, loaded),
        "shadows": shadows,
        "shadows_agreed": agreed,
        "note_limit": NOTE_LIMIT,
    }
