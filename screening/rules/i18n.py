"""Patient texts in other languages, kept as data under ``rules/i18n/``.

English is the source: ``questionnaire.yaml`` and ``ruleset.yaml``. Each other
supported language has one file, ``rules/i18n/<language>.yaml``, holding the
twin of every patient-facing English text keyed by the English ids (linkIds,
answer codes, outcome codes, rule ids). At load the file is checked against
``rules/schema/translation.schema.json`` and then against the English data:
every English text has its twin, nothing is extra, and each rule has as many
patient sentences as in English. A ``Catalog`` per language then holds
everything prebuilt, so serving a request in a language is a few dict lookups.

No sentence is written here, and no item or rule id is named.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Final

import yaml

from screening.rules.loader import QUESTIONNAIRE_FILE
from screening.rules.loader import RULESET_FILE
from screening.rules.loader import RulesError
from screening.rules.loader import check_schema
from screening.rules.loader import find_schema_dir
from screening.rules.questionnaire import ItemJson
from screening.rules.questionnaire import Questionnaire
from screening.rules.questionnaire import QuestionnaireJson
from screening.rules.results import PatientSummary
from screening.rules.ruleset import Ruleset

#: The languages the service speaks; the first is the source and the fallback.
SUPPORTED: Final = ("en", "es")
DEFAULT: Final = SUPPORTED[0]
I18N_DIR: Final = "i18n"
SCHEMA_NAME: Final = "translation.schema.json"
# libyaml's loader where installed: the same safe subset, several times faster
# than the pure-Python one on a file this size.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Texts:
    """Every patient text in one language, keyed by the ids of the English data."""

    title: str
    groups: Mapping[str, str]
    items: Mapping[str, str]
    options: Mapping[str, Mapping[str, str]]
    headlines: Mapping[str, str]
    bodies: Mapping[str, tuple[str, ...]]
    notes: Mapping[str, str]
    disclaimer: str


def english_texts(questionnaire: Questionnaire, ruleset: Ruleset) -> Texts:
    """The English texts, gathered from the source data into the shape of a translation."""
    return Texts(
        title=questionnaire.title,
        groups={group.link_id: group.text for group in questionnaire.groups},
        items={item.link_id: item.text for item in questionnaire.items},
        options={
            item.link_id: {option.code: option.display for option in item.options}
            for item in questionnaire.items
            if item.options
        },
        headlines={code: outcome.headline for code, outcome in ruleset.outcomes.items()},
        bodies={rule.id: rule.patient for rule in ruleset.rules if rule.kind == "decision"},
        notes={rule.id: rule.patient_note for rule in ruleset.rules if rule.patient_note},
        disclaimer=ruleset.disclaimer,
    )


def _texts_from_data(data: Mapping[str, Any]) -> Texts:
    """The texts of a translation file that passed the schema and completeness checks."""
    questionnaire, ruleset = data["questionnaire"], data["ruleset"]
    items = questionnaire["items"]
    rules = ruleset["rules"]
    return Texts(
        title=questionnaire["title"],
        groups=dict(questionnaire["groups"]),
        items={link_id: entry["text"] for link_id, entry in items.items()},
        options={
            link_id: dict(entry["options"])
            for link_id, entry in items.items()
            if "options" in entry
        },
        headlines=dict(ruleset["outcomes"]),
        bodies={rule_id: tuple(r["patient"]) for rule_id, r in rules.items() if "patient" in r},
        notes={rule_id: r["patient_note"] for rule_id, r in rules.items() if "patient_note" in r},
        disclaimer=ruleset["disclaimer"],
    )


class Catalog:
    """The patient-facing texts of one language, prebuilt for serving.

    The English catalog is built from the English data itself, so it gives
    back exactly what ``Questionnaire.to_json`` and the engine give.
    """

    def __init__(
        self, language: str, texts: Texts, questionnaire: Questionnaire, ruleset: Ruleset
    ) -> None:
        self.language = language
        self.texts = texts
        self._questionnaire_sha256 = questionnaire.sha256
        self._questionnaire_json = self._build_questionnaire_json(questionnaire)
        self._decisions = {
            rule.id: (texts.headlines[rule.outcome], texts.bodies[rule.id])
            for rule in ruleset.rules
            if rule.outcome is not None
        }
        self._rules = {rule.id: rule for rule in ruleset.rules}

    def _build_questionnaire_json(self, questionnaire: Questionnaire) -> QuestionnaireJson:
        """``Questionnaire.to_json()`` with this language's texts and a "language" field.

        Starting from the English document keeps every id, type, range and
        condition as it is.
        """
        texts = self.texts
        source = questionnaire.to_json()
        items: list[ItemJson] = []
        for item in source["items"]:
            link_id = item["linkId"]
            entry: ItemJson = {**item, "text": texts.items[link_id]}
            if "options" in item:
                displays = texts.options[link_id]
                entry["options"] = [
                    {**option, "display": displays[option["code"]]} for option in item["options"]
                ]
            items.append(entry)
        # Every field of the source, in its order, with the language after the version.
        return {
            "id": source["id"],
            "version": source["version"],
            "language": self.language,
            **source,
            "title": texts.title,
            "groups": [
                {**group, "text": texts.groups[group["linkId"]]} for group in source["groups"]
            ],
            "items": items,
        }

    def questionnaire_json(self, questionnaire: Questionnaire) -> QuestionnaireJson:
        """The questionnaire as ``GET /v1/questionnaire`` serves it, in this language.

        Built once at load: the returned document is shared between requests
        and must not be changed. ``questionnaire`` must be the one the catalog
        was loaded with (same content), else the texts could not match it.
        """
        if questionnaire.sha256 != self._questionnaire_sha256:
            raise ValueError(
                f"the '{self.language}' catalog was loaded for questionnaire "
                f"{self._questionnaire_sha256[:12]}, not {questionnaire.sha256[:12]}"
            )
        return self._questionnaire_json

    def patient_summary(
        self, summary: PatientSummary, decided_by: str, matched_rules: Iterable[str]
    ) -> PatientSummary:
        """The patient summary in this language for a result's rule ids.

        ``summary`` is the English patient summary the engine built; the result
        keeps its keys and their order, with headline, body, notes and
        disclaimer in this language (notes in the order of ``matched_rules``).
        """
        return {**summary, **self.summary_for(decided_by, matched_rules)}

    def summary_for(self, decided_by: str, matched_rules: Iterable[str]) -> PatientSummary:
        """The patient summary in this language, built from a result's rule ids alone:
        headline, body, the notes that fit the outcome (in the order of
        ``matched_rules``), disclaimer."""
        decision = self._decisions.get(decided_by)
        if decision is None:
            raise ValueError(f"'{decided_by}' is not a decision rule of the loaded ruleset")
        matched = list(matched_rules)
        if not self._rules.keys() >= set(matched):
            unknown = ", ".join(sorted(set(matched) - self._rules.keys()))
            raise ValueError(f"unknown rule ids in matched_rules: {unknown}")
        headline, body = decision
        notes = self.texts.notes
        outcome = self._rules[decided_by].outcome
        assert outcome is not None
        return {
            "headline": headline,
            "body": list(body),
            # Only the notes that fit the outcome (rules-v1 ``patient_note_for``).
            "notes": [
                notes[rule_id]
                for rule_id in matched
                if rule_id in notes and self._rules[rule_id].note_fits(outcome)
            ],
            "disclaimer": self.texts.disclaimer,
        }


def _read(path: Path) -> tuple[Any, list[str]]:
    """Parse one YAML file; return the data, or the problems that stopped it."""
    try:
        return yaml.load(path.read_bytes(), Loader=_YAML_LOADER), []
    except OSError as exc:
        return None, [f"{path}: cannot be read ({exc.strerror})"]
    except yaml.YAMLError as exc:
        return None, [f"{path}: is not valid YAML ({exc})"]


def _key_problems(path: Path, node: Any, where: str = "") -> Iterator[str]:
    """Mapping keys that YAML read as something other than text.

    An unquoted ``no:`` or ``yes:`` becomes false or true, which would
    otherwise surface as a puzzling schema message.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                yield (
                    f"{path}: {where or '(top level)'}: key {key!r} is not text; "
                    'quote answer codes like "no" and "yes"'
                )
            else:
                yield from _key_problems(path, value, f"{where}.{key}" if where else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _key_problems(path, value, f"{where}[{index}]")


def _match_ids(
    where: str, expected: Iterable[str], given: Mapping[str, Any], unknown_hint: str
) -> Iterator[str]:
    """Name every expected id with no entry, then every entry with an unknown id."""
    expected = list(expected)
    for key in expected:
        if key not in given:
            yield f"{where} '{key}': has no translation (every English text needs its twin)"
    known = set(expected)
    for key in given:
        if key not in known:
            yield f"{where} '{key}': unknown ({unknown_hint})"


def _completeness_problems(
    path: Path, data: Mapping[str, Any], questionnaire: Questionnaire, ruleset: Ruleset
) -> Iterator[str]:
    """Every way a schema-valid translation file disagrees with the English data."""
    language = path.stem
    if data["language"] != language:
        yield f"{path}: language is '{data['language']}', but the file is named for '{language}'"
    for name, source_id, version in (
        ("questionnaire", questionnaire.id, questionnaire.version),
        ("ruleset", ruleset.id, ruleset.version),
    ):
        ref = data["translates"][name]
        if (ref["id"], ref["version"]) != (source_id, version):
            yield (
                f"{path}: translates {name} {ref['id']} {ref['version']}, but the loaded "
                f"{name} is {source_id} {version}: review the texts, then update translates"
            )

    texts = data["questionnaire"]
    yield from _match_ids(
        f"{path}: group",
        (group.link_id for group in questionnaire.groups),
        texts["groups"],
        f"no such group in {QUESTIONNAIRE_FILE}",
    )
    yield from _match_ids(
        f"{path}: item",
        questionnaire.by_link_id,
        texts["items"],
        f"no such item in {QUESTIONNAIRE_FILE}",
    )
    for link_id, entry in texts["items"].items():
        item = questionnaire.by_link_id.get(link_id)
        if item is None:
            continue
        options = entry.get("options")
        if not item.options:
            if options is not None:
                yield f"{path}: item '{link_id}': has options, but the item has no answer codes"
            continue
        yield from _match_ids(
            f"{path}: item '{link_id}': option",
            (option.code for option in item.options),
            options or {},
            f"not an answer code of this item in {QUESTIONNAIRE_FILE}",
        )

    yield from _match_ids(
        f"{path}: outcome",
        ruleset.outcomes,
        data["ruleset"]["outcomes"],
        f"no such outcome in {RULESET_FILE}",
    )
    rules = data["ruleset"]["rules"]
    by_id = {rule.id: rule for rule in ruleset.rules}
    for rule in ruleset.rules:
        where = f"{path}: rule '{rule.id}'"
        entry = rules.get(rule.id)
        if rule.kind == "decision":
            if entry is None:
                yield f"{where}: has no translation of its patient sentences"
            elif "patient" not in entry:
                yield f"{where}: is a decision rule: give 'patient' (a list of sentences)"
            elif len(entry["patient"]) != len(rule.patient):
                yield (
                    f"{where}: has {len(entry['patient'])} patient sentences, English has "
                    f"{len(rule.patient)} (one sentence per entry)"
                )
        elif rule.patient_note:
            if entry is None:
                yield f"{where}: has no translation of its patient_note"
            elif "patient_note" not in entry:
                yield f"{where}: is a note rule: give 'patient_note' (one line)"
        elif entry is not None:
            yield f"{where}: has no patient text in {RULESET_FILE}, so it takes none here"
    for rule_id in rules:
        if rule_id not in by_id:
            yield f"{path}: rule '{rule_id}': unknown (no such rule in {RULESET_FILE})"


def load_translations(
    rules_dir: Path,
    questionnaire: Questionnaire,
    ruleset: Ruleset,
    schema_dir: Path | None = None,
) -> dict[str, Catalog]:
    """Load and check every ``rules/i18n/*.yaml``; return a catalog per supported language.

    ``schema_dir``: the schemas the package's other files were checked with (found from
    ``rules_dir`` when not given).

    Raises ``RulesError`` listing every problem, each naming the file and the
    group, item, option, outcome or rule it concerns.
    """
    folder = rules_dir / I18N_DIR
    schema_dir = schema_dir or find_schema_dir(rules_dir)
    found = {path.stem: path for path in sorted(folder.glob("*.yaml"))}
    problems: list[str] = []
    for language in SUPPORTED[1:]:
        if language not in found:
            problems.append(f"{folder / language}.yaml: missing ('{language}' is supported)")
    catalogs = {
        DEFAULT: Catalog(DEFAULT, english_texts(questionnaire, ruleset), questionnaire, ruleset)
    }
    for language, path in found.items():
        if language not in SUPPORTED[1:]:
            problems.append(
                f"{path}: '{language}' is not a supported translation "
                f"(supported: {', '.join(SUPPORTED[1:])}; {DEFAULT} is the source)"
            )
            continue
        data, file_problems = _read(path)
        if not file_problems:
            file_problems = list(_key_problems(path, data))
        if not file_problems:
            file_problems = check_schema(path, data, schema_dir, SCHEMA_NAME)
        if not file_problems:
            file_problems = list(_completeness_problems(path, data, questionnaire, ruleset))
        if file_problems:
            problems.extend(file_problems)
        else:
            catalogs[language] = Catalog(language, _texts_from_data(data), questionnaire, ruleset)
    if problems:
        raise RulesError(problems)
    return {language: catalogs[language] for language in SUPPORTED}
