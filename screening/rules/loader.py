"""Load ``rules/``: JSON Schema validation, then cross-checks, then model objects.

Every problem found is reported at once, each naming the file and, where it
applies, the rule and the item, so a clinician editing the YAML can fix it.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Iterable
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing import Resource

from screening.rules import conditions
from screening.rules.questionnaire import Group
from screening.rules.questionnaire import Item
from screening.rules.questionnaire import Option
from screening.rules.questionnaire import Questionnaire
from screening.rules.ruleset import Outcome
from screening.rules.ruleset import Rule
from screening.rules.ruleset import Ruleset
from screening.rules.ruleset import Source

QUESTIONNAIRE_FILE = "questionnaire.yaml"
RULESET_FILE = "ruleset.yaml"
CASES_FILE = "cases.yaml"
SCHEMA_DIR = "schema"
CARD_SUMMARY_LIMIT = 140
# libyaml's loader where installed: the same safe subset, and the rules load in every
# worker and command at start-up (the pure-Python loader took 0.1 s of it).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The longest suffix card_summary() adds: " (+NN more findings)".
_CARD_SUFFIX_ROOM = len(" (+99 more findings)")


class RulesError(Exception):
    """The rules folder can't be used; ``problems`` lists every reason."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


#: The schemas a package folder falls back to when neither it nor a folder above it has them.
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "rules" / SCHEMA_DIR


def find_schema_dir(directory: Path) -> Path:
    """The ``schema/`` folder nearest ``directory`` (itself or a folder above it)."""
    for folder in (directory, *directory.resolve().parents):
        if (folder / SCHEMA_DIR / "ruleset.schema.json").is_file():
            return folder / SCHEMA_DIR
    return DEFAULT_SCHEMA_DIR


def read_yaml(path: Path) -> tuple[Any, bytes]:
    """Parse one YAML file, returning the data and the raw bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RulesError([f"{path}: cannot be read ({exc.strerror})"]) from None
    try:
        return yaml.load(raw, Loader=_YAML_LOADER), raw
    except yaml.YAMLError as exc:
        raise RulesError([f"{path}: is not valid YAML ({exc})"]) from None


@cache
def _validators(schema_dir: Path) -> dict[str, Draft202012Validator]:
    """The JSON Schema validators kept under ``rules/schema``, by file name."""
    resources = []
    for path in sorted(schema_dir.glob("*.schema.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, contents))
    registry: Registry[Any] = Registry().with_resources(
        (contents["$id"], Resource.from_contents(contents)) for _, contents in resources
    )
    return {
        name: Draft202012Validator(
            contents, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for name, contents in resources
    }


def _where(document: Any, path: Iterable[Any]) -> str:
    """Describe a JSON path, naming the rule or item it falls in."""
    parts: list[str] = []
    node = document
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(key, int):
            label = f"[{key}]"
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                label += f" (rule '{node['id']}')"
            elif isinstance(node, dict) and isinstance(node.get("linkId"), str):
                label += f" (item '{node['linkId']}')"
            parts.append(label)
        else:
            parts.append(f".{key}" if parts else str(key))
    return "".join(parts) or "(top level)"


def check_schema(path: Path, data: Any, schema_dir: Path, schema_name: str) -> list[str]:
    """Validate one document against its JSON Schema; return readable problems."""
    validators = _validators(schema_dir)
    if schema_name not in validators:
        return [f"{schema_dir / schema_name}: schema file is missing"]
    return [
        f"{path}: {_where(data, error.absolute_path)}: {error.message}"
        for error in sorted(validators[schema_name].iter_errors(data), key=lambda e: e.path)
    ]


def _check_condition(where: str, data: dict[str, Any], known: dict[str, Item]) -> Iterator[str]:
    """Cross-check every comparison in a condition against the questionnaire."""
    for comparison in conditions.parse(data).comparisons():
        link_id, operator, expected = comparison.link_id, comparison.operator, comparison.expected
        item = known.get(link_id)
        if item is None:
            yield f"{where}: names unknown item '{link_id}'"
            continue
        if item.type not in conditions.OPERATOR_TYPES[operator]:
            yield f"{where}: operator '{operator}' does not fit item '{link_id}' ({item.type})"
            continue
        if operator == "answered":
            continue
        values = expected if isinstance(expected, list) else [expected]
        for value in values:
            if item.type in ("choice", "multi_choice"):
                if not isinstance(value, str) or value not in item.codes:
                    yield f"{where}: item '{link_id}' has no answer code {value!r}"
            elif item.type == "boolean":
                if not isinstance(value, bool):
                    yield f"{where}: item '{link_id}' is yes/no: compare with true or false"
            elif isinstance(value, bool) or not isinstance(value, int):
                yield f"{where}: item '{link_id}' is a number: compare with a whole number"


def _enable_when_problems(
    where: str, data: dict[str, Any], earlier: dict[str, Item], all_ids: set[str]
) -> Iterator[str]:
    """Cross-check an enable_when condition: it may read only earlier items."""
    for comparison in conditions.parse(data).comparisons():
        if comparison.link_id in all_ids and comparison.link_id not in earlier:
            yield (
                f"{where}: enable_when: item '{comparison.link_id}' must come before "
                "the item it enables"
            )
            return
    yield from _check_condition(f"{where}: enable_when", data, earlier)


def _build_questionnaire(path: Path, data: dict[str, Any], raw: bytes) -> Questionnaire:
    """Cross-check the questionnaire and build its model."""
    problems: list[str] = []
    items: list[Item] = []
    seen: dict[str, Item] = {}
    all_ids = {item["linkId"] for group in data["groups"] for item in group["items"]}
    group_ids: set[str] = set()
    for group in data["groups"]:
        if group["linkId"] in group_ids or group["linkId"] in seen:
            problems.append(f"{path}: group '{group['linkId']}': linkId is used twice")
        group_ids.add(group["linkId"])
        for raw_item in group["items"]:
            link_id = raw_item["linkId"]
            where = f"{path}: item '{link_id}'"
            if link_id in seen or link_id in group_ids:
                problems.append(f"{where}: linkId is used twice")
            options = tuple(
                Option(o["code"], o["display"], o.get("exclusive", False))
                for o in raw_item.get("options", ())
            )
            codes = [o.code for o in options]
            if len(set(codes)) != len(codes):
                problems.append(f"{where}: an answer code is listed twice")
            if raw_item["type"] == "choice" and any(o.exclusive for o in options):
                problems.append(f"{where}: only pick-all-that-fit items have exclusive codes")
            if raw_item.get("min", 0) > raw_item.get("max", 0):
                problems.append(f"{where}: min is greater than max")
            enable_data = raw_item.get("enable_when")
            if enable_data is not None:
                problems.extend(_enable_when_problems(where, enable_data, seen, all_ids))
            item = Item(
                link_id=link_id,
                type=raw_item["type"],
                text=raw_item["text"],
                required=raw_item["required"],
                group=group["linkId"],
                options=options,
                minimum=raw_item.get("min"),
                maximum=raw_item.get("max"),
                enable_when=None if enable_data is None else conditions.parse(enable_data),
                enable_when_data=enable_data,
                code=raw_item.get("code"),
                initial_expression=raw_item.get("initial_expression"),
            )
            items.append(item)
            seen[link_id] = item
    if problems:
        raise RulesError(problems)
    return Questionnaire(
        id=data["id"],
        version=data["version"],
        title=data["title"],
        url=data["url"],
        code_system=data["code_system"],
        groups=tuple(Group(g["linkId"], g["text"]) for g in data["groups"]),
        items=tuple(items),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _placeholders(text: str) -> list[str]:
    """The ``{linkId}`` fields of a clinician text, in order (ValueError if malformed)."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _placeholder_problems(where: str, text: str, questionnaire: Questionnaire) -> Iterator[str]:
    """A clinician text may name answers as ``{linkId}``: each must be a plain field naming
    an item of the questionnaire (a literal brace would be read as one)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        yield f"{where}: clinician: a brace does not enclose an item's linkId ({{linkId}})"
        return
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or name not in questionnaire.by_link_id:
            yield f"{where}: clinician: {{{name}}} names no item of the questionnaire"


def _ruleset_problems(
    path: Path, data: dict[str, Any], questionnaire: Questionnaire
) -> Iterator[str]:
    """Every way the ruleset disagrees with itself or with the questionnaire."""
    ref = data["questionnaire"]
    if (ref["id"], ref["version"]) != (questionnaire.id, questionnaire.version):
        yield (
            f"{path}: questionnaire {ref['id']} {ref['version']} is not the loaded "
            f"questionnaire {questionnaire.id} {questionnaire.version}"
        )
    outcomes = {o["code"]: o for o in data["outcomes"]}
    if len(outcomes) != len(data["outcomes"]):
        yield f"{path}: an outcome code is listed twice"
    source_ids = [s["id"] for s in data["sources"]]
    if len(set(source_ids)) != len(source_ids):
        yield f"{path}: a source id is listed twice"
    for link_id in data["key_answers"]:
        if link_id not in questionnaire.by_link_id:
            yield f"{path}: key_answers names unknown item '{link_id}'"
    rule_ids: set[str] = set()
    decisions = [r for r in data["rules"] if r["kind"] == "decision"]
    used_outcomes = set()
    for rule in data["rules"]:
        where = f"{path}: rule '{rule['id']}'"
        if rule["id"] in rule_ids:
            yield f"{where}: rule id is used twice"
        rule_ids.add(rule["id"])
        if not rule["sources"]:
            yield f"{where}: cites no source"
        for source in rule["sources"]:
            if source not in source_ids:
                yield f"{where}: cites unknown source '{source}'"
        yield from _check_condition(where, rule["when"], questionnaire.by_link_id)
        for key in ("patient_note_for", "with_outcomes"):
            for code in rule.get(key, ()):
                if code not in outcomes:
                    yield f"{where}: {key} names unknown outcome '{code}'"
        yield from _placeholder_problems(where, rule["clinician"], questionnaire)
        if rule["kind"] == "decision":
            outcome = outcomes.get(rule["outcome"])
            used_outcomes.add(rule["outcome"])
            if outcome is None:
                yield f"{where}: unknown outcome '{rule['outcome']}'"
            elif (
                len(outcome["label"]) + 2 + len(rule["title"]) + _CARD_SUFFIX_ROOM
                > CARD_SUMMARY_LIMIT
            ):
                yield f"{where}: outcome label and title are too long for a 140-character card"
    if not decisions:
        yield f"{path}: there is no decision rule"
    elif "always" not in decisions[-1]["when"]:
        yield (
            f"{path}: rule '{decisions[-1]['id']}': the last decision rule must always match "
            "(when: {always: true})"
        )
    for code in outcomes.keys() - used_outcomes:
        yield f"{path}: outcome '{code}' is never given by any rule"


def _build_ruleset(
    path: Path, data: dict[str, Any], raw: bytes, questionnaire: Questionnaire
) -> Ruleset:
    """Cross-check the ruleset and build its model."""
    problems = list(_ruleset_problems(path, data, questionnaire))
    if problems:
        raise RulesError(problems)
    rules = tuple(
        Rule(
            id=r["id"],
            kind=r["kind"],
            title=r["title"],
            condition=conditions.parse(r["when"]),
            condition_data=r["when"],
            sources=tuple(r["sources"]),
            clinician=r["clinician"],
            outcome=r.get("outcome"),
            patient=tuple(r.get("patient", ())),
            patient_note=r.get("patient_note"),
            patient_note_for=tuple(r.get("patient_note_for", ())),
            with_outcomes=tuple(r.get("with_outcomes", ())),
            clinician_answers=tuple(
                (link_id, questionnaire.by_link_id[link_id].display)
                for link_id in dict.fromkeys(_placeholders(r["clinician"]))
            ),
        )
        for r in data["rules"]
    )
    return Ruleset(
        id=data["id"],
        version=data["version"],
        sha256=hashlib.sha256(raw).hexdigest(),
        title=data["title"],
        questionnaire_id=data["questionnaire"]["id"],
        questionnaire_version=data["questionnaire"]["version"],
        disclaimer=data["disclaimer"],
        context=data.get("context", ""),
        outcomes={o["code"]: Outcome(**o) for o in data["outcomes"]},
        sources={s["id"]: Source(**s) for s in data["sources"]},
        rules=rules,
        key_answers=tuple(questionnaire.by_link_id[link_id] for link_id in data["key_answers"]),
    )


def load_files(directory: Path, schema_dir: Path) -> tuple[Questionnaire, Ruleset]:
    """Load, validate and cross-check the questionnaire and ruleset in one package folder."""
    if not directory.is_dir():
        raise RulesError([f"{directory}: rules folder not found"])
    q_path = directory / QUESTIONNAIRE_FILE
    r_path = directory / RULESET_FILE
    q_data, q_raw = read_yaml(q_path)
    r_data, r_raw = read_yaml(r_path)
    problems = check_schema(q_path, q_data, schema_dir, "questionnaire.schema.json")
    problems += check_schema(r_path, r_data, schema_dir, "ruleset.schema.json")
    if problems:
        raise RulesError(problems)
    questionnaire = _build_questionnaire(q_path, q_data, q_raw)
    return questionnaire, _build_ruleset(r_path, r_data, r_raw, questionnaire)
