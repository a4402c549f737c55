"""What changed between two rule packages, in words a reviewer reads (``rules diff``).

Pure: two loaded packages in, one plain object out, in the shape
rules-lifecycle-v1.md fixes: ``{"items": {added, removed, changed}, "rules": {added,
removed, changed, moved}, "texts": [...]}``. Ids are strings; each change names
what changed and the old and new value.
"""

from __future__ import annotations

import json
import textwrap
from typing import NotRequired
from typing import TypedDict

from screening.rules.questionnaire import Item
from screening.rules.questionnaire import Questionnaire
from screening.rules.ruleset import Rule
from screening.rules.ruleset import Ruleset

#: One field that changed, with its old and new value ("from" is a Python keyword).
FieldChange = TypedDict("FieldChange", {"field": str, "from": object, "to": object})
#: A text of the ruleset that changed, by what it is ("outcome CODE label", ...).
TextChange = TypedDict("TextChange", {"id": str, "from": object, "to": object})
#: A decision rule kept whose place among the kept ones changed (1 is first).
Move = TypedDict("Move", {"id": str, "from": int, "to": int})


class Changed(TypedDict):
    """An item or rule in both packages, and each field of it that changed."""

    id: str
    changes: list[FieldChange]


class Section(TypedDict):
    """What was added, removed, changed (and, for rules, moved) of items or rules."""

    added: list[str]
    removed: list[str]
    changed: list[Changed]
    moved: NotRequired[list[Move]]


class Diff(TypedDict):
    """rules-lifecycle-v1.md's diff of two packages."""

    items: Section
    rules: Section
    texts: list[TextChange]


def _item_facts(item: Item) -> dict[str, object]:
    return {
        "type": item.type,
        "codes": [option.code for option in item.options],
        "range": [item.minimum, item.maximum],
        "enable_when": dict(item.enable_when_data) if item.enable_when_data else None,
        "text": item.text,
        "options": {option.code: option.display for option in item.options},
        "required": item.required,
    }


def _rule_facts(rule: Rule) -> dict[str, object]:
    return {
        "kind": rule.kind,
        "condition": rule.condition_data,
        "outcome": rule.outcome,
        "title": rule.title,
        "patient": list(rule.patient),
        "patient_note": rule.patient_note,
        "patient_note_for": list(rule.patient_note_for),
        "with_outcomes": list(rule.with_outcomes),
        "clinician": rule.clinician,
        "sources": list(rule.sources),
    }


def _changes(old: dict[str, object], new: dict[str, object]) -> list[FieldChange]:
    return [{"field": key, "from": old[key], "to": new[key]} for key in old if old[key] != new[key]]


def _items(old: Questionnaire, new: Questionnaire) -> Section:
    before = {item.link_id: item for item in old.items}
    after = {item.link_id: item for item in new.items}
    changed: list[Changed] = []
    for link_id in before.keys() & after.keys():
        differences = _changes(_item_facts(before[link_id]), _item_facts(after[link_id]))
        if differences:
            changed.append({"id": link_id, "changes": differences})
    return {
        "added": [i for i in after if i not in before],
        "removed": [i for i in before if i not in after],
        "changed": sorted(changed, key=lambda c: list(after).index(c["id"])),
    }


def _rules(old: Ruleset, new: Ruleset) -> Section:
    before = {rule.id: rule for rule in old.rules}
    after = {rule.id: rule for rule in new.rules}
    changed: list[Changed] = []
    for rule_id in [r for r in after if r in before]:
        differences = _changes(_rule_facts(before[rule_id]), _rule_facts(after[rule_id]))
        if differences:
            changed.append({"id": rule_id, "changes": differences})
    # Order decides: a rule kept whose place among the kept decision rules changed has moved.
    kept_before = [r.id for r in old.rules if r.id in after and r.kind == "decision"]
    kept_after = [r.id for r in new.rules if r.id in before and r.kind == "decision"]
    moved: list[Move] = [
        {"id": rule_id, "from": kept_before.index(rule_id) + 1, "to": place + 1}
        for place, rule_id in enumerate(kept_after)
        if kept_before.index(rule_id) != place
    ]
    return {
        "added": [r for r in after if r not in before],
        "removed": [r for r in before if r not in after],
        "changed": changed,
        "moved": moved,
    }


def _texts(old: Ruleset, new: Ruleset) -> list[TextChange]:
    texts: list[TextChange] = []

    def compare(what: str, before: object, after: object) -> None:
        if before != after:
            texts.append({"id": what, "from": before, "to": after})

    compare("disclaimer", old.disclaimer, new.disclaimer)
    compare("context", old.context, new.context)
    for code in {**old.outcomes, **new.outcomes}:
        a, b = old.outcomes.get(code), new.outcomes.get(code)
        for field in ("label", "headline", "indicator"):
            compare(f"outcome {code} {field}", getattr(a, field, None), getattr(b, field, None))
    for source_id in {**old.sources, **new.sources}:
        was, now = old.sources.get(source_id), new.sources.get(source_id)
        for field in ("citation", "facts"):
            compare(
                f"source {source_id} {field}", getattr(was, field, None), getattr(now, field, None)
            )
    return texts


def diff_packages(old: tuple[Questionnaire, Ruleset], new: tuple[Questionnaire, Ruleset]) -> Diff:
    """Every change from ``old`` to ``new`` (each a questionnaire and its ruleset)."""
    return {
        "items": _items(old[0], new[0]),
        "rules": _rules(old[1], new[1]),
        "texts": _texts(old[1], new[1]),
    }


def _shown(value: object) -> str:
    """A changed value in full: text as it is, anything else (a condition) as JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


#: A change whose two values fit on one line with its label is shown on that line.
_ONE_LINE = 100


def _change_lines(label: str, was: object, now: object) -> list[str]:
    """``changed  LABEL: WAS -> NOW``, or, for long values, each in full on its own lines."""
    before, after = _shown(was), _shown(now)
    line = f"  changed  {label}: {before} -> {after}"
    if len(line) <= _ONE_LINE:
        return [line]
    lines = [f"  changed  {label}:"]
    for name, value in (("was", before), ("now", after)):
        lines.extend(
            textwrap.wrap(
                value,
                _ONE_LINE,
                initial_indent=f"      {name}: ",
                subsequent_indent=" " * 11,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [f"      {name}: "]
        )
    return lines


def diff_text(diff: Diff, old_name: str, new_name: str) -> list[str]:
    """The diff as lines a clinical safety officer reads."""
    lines = [f"From {old_name} to {new_name}"]
    for title, part in (("Items", diff["items"]), ("Rules", diff["rules"])):
        lines.append("")
        lines.append(f"{title}:")
        if not any(part.values()):
            lines.append("  no change")
        lines.extend(f"  added    {i}" for i in part["added"])
        lines.extend(f"  removed  {i}" for i in part["removed"])
        lines.extend(
            f"  moved    {m['id']}: place {m['from']} -> {m['to']}" for m in part.get("moved", [])
        )
        for change in part["changed"]:
            for c in change["changes"]:
                lines.extend(_change_lines(f"{change['id']} {c['field']}", c["from"], c["to"]))
    lines.append("")
    lines.append("Texts:")
    if not diff["texts"]:
        lines.append("  no change")
    for t in diff["texts"]:
        lines.extend(_change_lines(t["id"], t["from"], t["to"]))
    return lines
