"""Spanish patient texts: complete, plain (about US grade 6), never diagnostic, and served."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import textstat
import yaml

from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.i18n import SUPPORTED
from screening.rules.i18n import Catalog
from screening.rules.i18n import Texts
from screening.rules.i18n import load_translations
from screening.rules.loader import RulesError
from screening.rules.results import EngineResult
from screening.rules.results import PatientSummary
from screening.rules.rulebook import load_rules
from tests.support.app import RULES_DIR  # noqa: E402
from tests.support.app import RULES_ROOT

RULEBOOK = load_rules(RULES_DIR)
QUESTIONNAIRE = RULEBOOK.questionnaire
RULESET = RULEBOOK.ruleset
CATALOGS = load_translations(RULES_DIR, QUESTIONNAIRE, RULESET)
ES = CATALOGS["es"].texts

# Fernandez-Huerta (1959) is Flesch reading ease refit for Spanish, on the same
# 0-100 scale. Its published table (legible.es, after Fernandez Huerta; formula
# as corrected by Law 2011, which textstat uses) reads 70-80 "algo/bastante
# facil" as 6th grade, 80-90 as 5th, 90-100 as 4th. So 70 or more is the Spanish
# match for the English texts' Flesch-Kincaid grade 6 or lower. textstat counts
# Spanish syllables with Pyphen's hyphenation, which misses a lone vowel at a
# word's edge ("a-yu-da" counts 2), so scores run a few points high: the texts
# are written to clear 70 with room to spare, not to scrape past it.
MIN_FERNANDEZ_HUERTA = 70.0
# textstat keeps its language in a process-wide setting; this is its default,
# which tests/test_texts.py relies on.
TEXTSTAT_ENGLISH = "en_US"
PROCEDURE_EN = (
    "lumbar medial branch radiofrequency denervation "
    "(also called radiofrequency ablation or rhizotomy)"
)
PROCEDURE_ES = (
    "denervación por radiofrecuencia de la rama medial lumbar "
    "(también llamada ablación por radiofrecuencia o rizotomía)"
)


@contextmanager
def spanish() -> Iterator[None]:
    """textstat set to Spanish inside the block, then back to English."""
    textstat.set_lang("es")
    try:
        yield
    finally:
        textstat.set_lang(TEXTSTAT_ENGLISH)


@pytest.fixture
def spanish_textstat() -> Iterator[None]:
    """textstat set to Spanish for one test, then back to English."""
    with spanish():
        yield


def spanish_passages(texts: Texts) -> list[tuple[str, str]]:
    """Every Spanish text a patient reads, grouped the way tests/test_texts.py reads English."""
    passages = [("disclaimer", texts.disclaimer)]
    for rule in RULESET.rules:
        if rule.outcome is not None:
            headline = texts.headlines[rule.outcome]
            passages.append((f"rule {rule.id}", " ".join([headline, *texts.bodies[rule.id]])))
        if rule.id in texts.notes:
            passages.append((f"note {rule.id}", texts.notes[rule.id]))
    for item in QUESTIONNAIRE.items:
        # Options are read with their question: a lone label like "Rayos X" has no grade.
        displays = texts.options.get(item.link_id, {})
        options = " ".join(f"{displays[option.code]}." for option in item.options)
        passages.append((f"item {item.link_id}", f"{texts.items[item.link_id]} {options}".strip()))
    for group in QUESTIONNAIRE.groups:
        # A heading has no grade alone: read it with its questions. The title,
        # a heading too, is checked for wording only.
        questions = [
            texts.items[i.link_id] for i in QUESTIONNAIRE.items if i.group == group.link_id
        ]
        passages.append(
            (f"group {group.link_id}", " ".join([f"{texts.groups[group.link_id]}.", *questions]))
        )
    return passages


PASSAGES = spanish_passages(ES)
PASSAGE_IDS = [name for name, _ in PASSAGES]


# --- Completeness ---------------------------------------------------------------


def test_every_supported_language_has_a_catalog() -> None:
    assert tuple(CATALOGS) == SUPPORTED
    assert all(catalog.language == language for language, catalog in CATALOGS.items())


def test_spanish_has_a_twin_for_every_english_text() -> None:
    english = CATALOGS["en"].texts
    assert ES.groups.keys() == english.groups.keys()
    assert ES.items.keys() == english.items.keys()
    assert {k: v.keys() for k, v in ES.options.items()} == {
        k: v.keys() for k, v in english.options.items()
    }
    assert ES.headlines.keys() == english.headlines.keys()
    assert {k: len(v) for k, v in ES.bodies.items()} == {
        k: len(v) for k, v in english.bodies.items()
    }
    assert ES.notes.keys() == english.notes.keys()


def test_the_english_catalog_is_the_english_data() -> None:
    english = CATALOGS["en"].texts
    assert english.title == QUESTIONNAIRE.title
    assert english.disclaimer == RULESET.disclaimer
    for item in QUESTIONNAIRE.items:
        assert english.items[item.link_id] == item.text


Edit = Callable[[dict[str, Any]], object]
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _rules(data: dict[str, Any]) -> dict[str, Any]:
    """The rule texts of a parsed translation file."""
    rules: dict[str, Any] = data["ruleset"]["rules"]
    return rules


def _items(data: dict[str, Any]) -> dict[str, Any]:
    """The item texts of a parsed translation file."""
    items: dict[str, Any] = data["questionnaire"]["items"]
    return items


BREAKS: list[tuple[str, Edit, list[str]]] = [
    (
        "item deleted",
        lambda d: _items(d).pop("rf_fever"),
        ["es.yaml", "item 'rf_fever'", "no translation"],
    ),
    (
        "option deleted",
        lambda d: _items(d)["pregnant"]["options"].pop("not_applicable"),
        ["es.yaml", "item 'pregnant'", "option 'not_applicable'", "no translation"],
    ),
    (
        "all options of an item deleted",
        lambda d: _items(d)["leg_symptoms"].pop("options"),
        ["item 'leg_symptoms'", "option 'none'", "option 'weakness'"],
    ),
    (
        "group deleted",
        lambda d: d["questionnaire"]["groups"].pop("safety"),
        ["es.yaml", "group 'safety'", "no translation"],
    ),
    (
        "headline deleted",
        lambda d: d["ruleset"]["outcomes"].pop("urgent_care"),
        ["es.yaml", "outcome 'urgent_care'", "no translation"],
    ),
    (
        "decision rule deleted",
        lambda d: _rules(d).pop("under_18"),
        ["es.yaml", "rule 'under_18'", "no translation"],
    ),
    (
        "note deleted",
        lambda d: _rules(d).pop("pregnancy"),
        ["es.yaml", "rule 'pregnancy'", "patient_note"],
    ),
    (
        "sentence deleted",
        lambda d: _rules(d)["positive_block"]["patient"].pop(),
        ["es.yaml", "rule 'positive_block'", "has 3 patient sentences", "English has 4"],
    ),
    (
        "sentence added",
        lambda d: _rules(d)["under_18"]["patient"].append("Una frase de más."),
        ["rule 'under_18'", "has 3 patient sentences", "English has 2"],
    ),
    (
        "unknown item",
        lambda d: _items(d).update(favourite_colour={"text": "¿Qué color le gusta?"}),
        ["es.yaml", "item 'favourite_colour'", "unknown"],
    ),
    (
        "unknown option code",
        lambda d: _items(d)["previous_rfa"]["options"].update(maybe="Quizás"),
        ["es.yaml", "item 'previous_rfa'", "option 'maybe'", "unknown"],
    ),
    (
        "options on an item without answer codes",
        lambda d: _items(d)["age_years"].update(options={"adult": "Adulto"}),
        ["item 'age_years'", "no answer codes"],
    ),
    (
        "unknown group",
        lambda d: d["questionnaire"]["groups"].update(extras="Más"),
        ["group 'extras'", "unknown"],
    ),
    (
        "unknown outcome",
        lambda d: d["ruleset"]["outcomes"].update(cured="Ya está."),
        ["outcome 'cured'", "unknown"],
    ),
    (
        "unknown rule",
        lambda d: _rules(d).update(made_up={"patient": ["Algo."]}),
        ["es.yaml", "rule 'made_up'", "unknown"],
    ),
    (
        "patient line for a note without one",
        lambda d: _rules(d).update(functional_impact={"patient_note": "Algo."}),
        ["rule 'functional_impact'", "no patient text in ruleset.yaml"],
    ),
    (
        "note given as sentences",
        lambda d: _rules(d).update(pregnancy={"patient": ["Algo."]}),
        ["rule 'pregnancy'", "is a note rule"],
    ),
    (
        "decision given as a note",
        lambda d: _rules(d).update(under_18={"patient_note": "Algo."}),
        ["rule 'under_18'", "is a decision rule"],
    ),
    (
        "schema: both kinds of text",
        lambda d: _rules(d)["under_18"].update(patient_note="Algo."),
        ["es.yaml", "ruleset.rules.under_18", "too many properties"],
    ),
    (
        "schema: missing disclaimer",
        lambda d: d["ruleset"].pop("disclaimer"),
        ["es.yaml", "'disclaimer' is a required property"],
    ),
    (
        "schema: empty text",
        lambda d: _items(d)["rf_fever"].update(text=""),
        ["es.yaml", "questionnaire.items.rf_fever.text"],
    ),
    (
        "older ruleset version",
        lambda d: d["translates"]["ruleset"].update(version="0.9.0"),
        ["es.yaml", "translates ruleset lumbar-rfa 0.9.0", "1.2.0"],
    ),
    (
        "language differs from the file name",
        lambda d: d.update(language="pt"),
        ["es.yaml", "'pt'", "named for 'es'"],
    ),
]


def _edit_spanish(folder: Path, edit: Edit) -> None:
    """Apply ``edit`` to the Spanish file of a rules copy."""
    path = folder / "i18n" / "es.yaml"
    # libyaml, where installed, keeps these two dozen rewrites quick.
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    edit(data)
    text = yaml.dump(data, Dumper=YAML_DUMPER, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [(edit, expected) for _, edit, expected in BREAKS],
    ids=[name for name, _, _ in BREAKS],
)
def test_a_broken_translation_is_named(rules_copy: Path, edit: Edit, expected: list[str]) -> None:
    _edit_spanish(rules_copy, edit)
    with pytest.raises(RulesError) as caught:
        load_translations(rules_copy, QUESTIONNAIRE, RULESET)
    message = str(caught.value)
    for part in expected:
        assert part in message, (part, message)


def test_every_problem_is_listed_at_once(rules_copy: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        """Three problems in one file."""
        _items(data).pop("rf_fever")
        _rules(data).pop("under_18")
        _rules(data).update(made_up={"patient": ["Algo."]})

    _edit_spanish(rules_copy, edit)
    with pytest.raises(RulesError) as caught:
        load_translations(rules_copy, QUESTIONNAIRE, RULESET)
    assert len(caught.value.problems) == 3


def test_an_unquoted_yes_or_no_code_is_explained(rules_copy: Path) -> None:
    path = rules_copy / "i18n" / "es.yaml"
    text = path.read_text(encoding="utf-8")
    # YAML reads a bare `no:` key as false.
    path.write_text(text.replace('"no": "No"', 'no: "No"', 1), encoding="utf-8")
    with pytest.raises(
        RulesError, match=r"es\.yaml: questionnaire\.items\.pregnant\.options.*quote"
    ):
        load_translations(rules_copy, QUESTIONNAIRE, RULESET)


def test_a_missing_translation_file_is_named(rules_copy: Path) -> None:
    (rules_copy / "i18n" / "es.yaml").unlink()
    with pytest.raises(RulesError, match=r"es\.yaml: missing"):
        load_translations(rules_copy, QUESTIONNAIRE, RULESET)


def test_an_unsupported_language_file_is_named(rules_copy: Path) -> None:
    (rules_copy / "i18n" / "fr.yaml").write_text("language: fr\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"fr\.yaml: 'fr' is not a supported translation"):
        load_translations(rules_copy, QUESTIONNAIRE, RULESET)


def test_invalid_yaml_is_named(rules_copy: Path) -> None:
    (rules_copy / "i18n" / "es.yaml").write_text("language: [es\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"es\.yaml: is not valid YAML"):
        load_translations(rules_copy, QUESTIONNAIRE, RULESET)


# --- Reading level and wording -----------------------------------------------------


def test_spanish_scoring_is_spanish_and_works_offline(
    spanish_textstat: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        """Stand in for socket.connect: no connection is allowed."""
        raise OSError("this test has no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    # Spanish hyphenation: de-ner-va-ción. English rules would not split it so.
    assert textstat.syllable_count("denervación") == 4
    # A sentence no other test scores, so textstat's cache can't answer for it.
    assert textstat.fernandez_huerta("El gato come pan en la casa de su amigo.") > 90


def test_textstat_is_handed_back_in_english(monkeypatch: pytest.MonkeyPatch) -> None:
    # tests/test_texts.py scores English in the same process, even after a failed Spanish test.
    calls: list[str] = []
    monkeypatch.setattr(textstat, "set_lang", calls.append)
    with pytest.raises(AssertionError), spanish():
        raise AssertionError
    assert calls == ["es", TEXTSTAT_ENGLISH]


@pytest.mark.parametrize(("name", "text"), PASSAGES, ids=PASSAGE_IDS)
def test_spanish_reads_at_grade_6_or_easier(name: str, text: str, spanish_textstat: None) -> None:
    assert textstat.fernandez_huerta(text) >= MIN_FERNANDEZ_HUERTA


def test_the_readability_check_catches_hard_spanish(spanish_textstat: None) -> None:
    hard = (
        "La denervación por radiofrecuencia constituye una intervención terapéutica "
        "mínimamente invasiva, indicada en determinadas circunstancias clínicas."
    )
    assert textstat.fernandez_huerta(hard) < MIN_FERNANDEZ_HUERTA


FORBIDDEN = [
    r"\b(usted )?(tiene|padece|sufre( de)?) (un |una )?(\w+ )?"
    r"(s[ií]ndrome|enfermedad|c[aá]ncer|infecci[oó]n|fractura|tumor|artritis|radiculopat[ií]a"
    r"|ci[aá]tica|estenosis)",
    r"\bcalific(a|as|an|ar)\b",
    r"\bcumple (con )?(los |todos los )?requisitos\b",
    r"\belegib",
    r"\bdiagnosticad[oa]s? (con|de)\b",
    r"\bdiagn[oó]stico de\b",
    r"\bes (un|una) (buen |buena )?candidat[oa]\b",
    r"\b(lo |la )?(curar[aá]|va a curar|arreglar[aá])\b",
    r"\brizotom[ií]a dorsal selectiva\b",
    # Named conditions never appear as findings in patient text.
    r"\bcola de caballo\b",
    r"\bradiculopat[ií]a\b",
    r"\bosteoporosis\b",
    r"\bmalign",
    r"\bfacet",
]
# Every text, including the title and the option labels (all inside PASSAGES).
WORDING = [*PASSAGES, ("title", ES.title)]


@pytest.mark.parametrize(("name", "text"), WORDING, ids=[name for name, _ in WORDING])
def test_spanish_never_diagnoses(name: str, text: str) -> None:
    for pattern in FORBIDDEN:
        assert not re.search(pattern, text, re.IGNORECASE), (name, pattern)


@pytest.mark.parametrize(
    "text",
    [
        "Usted tiene ciática.",
        "Usted califica para este tratamiento.",
        "Usted es elegible.",
        "Fue diagnosticado con cáncer.",
        "Usted es un buen candidato.",
        "Usted padece una hernia con radiculopatía.",
        "Le harán una rizotomía dorsal selectiva.",
    ],
)
def test_the_spanish_wording_check_catches_diagnostic_sentences(text: str) -> None:
    assert any(re.search(p, text, re.IGNORECASE) for p in FORBIDDEN)


def test_the_disclaimer_says_it_is_not_a_diagnosis_and_when_to_get_help() -> None:
    assert "No es un diagnóstico" in ES.disclaimer
    assert "busque ayuda médica" in ES.disclaimer


def test_each_body_entry_is_one_sentence_like_english() -> None:
    for rule_id, body in ES.bodies.items():
        for sentence in body:
            assert len(re.findall(r"[.!?](\s|$)", sentence)) == 1, (rule_id, sentence)


def test_urgent_texts_say_to_get_help_today() -> None:
    for rule in RULESET.rules:
        if rule.outcome == "urgent_care":
            text = " ".join(ES.bodies[rule.id])
            assert re.search(r"\b(hoy|ahora|ya|de inmediato)\b", text), rule.id
            # Where English sends people to an emergency room, Spanish does too.
            if "emergency room" in " ".join(rule.patient):
                assert "sala de emergencias" in text, rule.id
            if "emergency number" in " ".join(rule.patient):
                assert "número de emergencias" in text, rule.id


def test_the_procedure_is_named_where_english_names_it() -> None:
    for rule in RULESET.rules:
        english = " ".join(rule.patient)
        spanish = " ".join(ES.bodies.get(rule.id, ()))
        assert (PROCEDURE_EN in english) == (PROCEDURE_ES in spanish), rule.id
        if "radiofrecuencia" in spanish:
            assert PROCEDURE_ES in spanish, rule.id
    assert any(PROCEDURE_ES in " ".join(body) for body in ES.bodies.values())


def test_spanish_speaks_to_the_reader_as_usted() -> None:
    # "Tú" forms would mix registers; these are the common ones.
    informal = re.compile(r"\b(tú|tienes|puedes|debes|habla con tu|tu médico|te duele)\b")
    for name, text in WORDING:
        assert not informal.search(text.lower()), name


# --- Serving ---------------------------------------------------------------------


def _skeleton(document: Any) -> Any:
    """The document with every patient text blanked: ids, types, ranges and conditions."""
    if isinstance(document, dict):
        return {
            key: "" if key in ("text", "display", "title") else _skeleton(value)
            for key, value in document.items()
            if key != "language"
        }
    if isinstance(document, list):
        return [_skeleton(value) for value in document]
    return document


def test_spanish_questionnaire_keeps_every_id_code_and_type() -> None:
    english = QUESTIONNAIRE.to_json()
    spanish = CATALOGS["es"].questionnaire_json(QUESTIONNAIRE)
    assert spanish["language"] == "es"
    assert list(spanish) == ["id", "version", "language", *list(english)[2:]]
    assert _skeleton(spanish) == _skeleton(english)
    assert spanish["title"] == ES.title
    for group in spanish["groups"]:
        assert group["text"] == ES.groups[group["linkId"]]
    for item in spanish["items"]:
        assert (
            item["text"]
            == ES.items[item["linkId"]]
            != QUESTIONNAIRE.by_link_id[item["linkId"]].text
        )
        for option in item.get("options", ()):
            assert option["display"] == ES.options[item["linkId"]][option["code"]]


def test_english_questionnaire_is_to_json_with_a_language() -> None:
    english = CATALOGS["en"].questionnaire_json(QUESTIONNAIRE)
    assert english["language"] == "en"
    assert {k: v for k, v in english.items() if k != "language"} == QUESTIONNAIRE.to_json()


def test_a_catalog_refuses_another_questionnaire(rules_copy: Path) -> None:
    path = rules_copy / "questionnaire.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    other = load_rules(rules_copy).questionnaire
    with pytest.raises(ValueError, match="catalog was loaded for questionnaire"):
        CATALOGS["es"].questionnaire_json(other)


def _summaries(answers: dict[str, Any]) -> tuple[EngineResult, PatientSummary, PatientSummary]:
    """The engine's result, its English patient summary, and that summary in Spanish."""
    result = evaluate(answers, RULESET)
    english = result["summary"]["patient"]
    spanish = CATALOGS["es"].patient_summary(english, result["decided_by"], result["matched_rules"])
    return result, english, spanish


def test_spanish_patient_summary_for_an_engine_result(valid_answers: dict[str, Any]) -> None:
    result, english, spanish = _summaries(valid_answers)
    decided = result["decided_by"]
    outcome = result["outcome"]
    assert list(spanish) == list(english) == ["headline", "body", "notes", "disclaimer"]
    assert spanish["headline"] == ES.headlines[outcome]
    assert spanish["body"] == list(ES.bodies[decided])
    assert len(spanish["body"]) == len(english["body"])
    assert spanish["notes"] == []
    assert spanish["disclaimer"] == ES.disclaimer


def test_spanish_patient_summary_translates_notes_in_order(valid_answers: dict[str, Any]) -> None:
    valid_answers.update(blood_thinners=True, pregnant="yes", imaging_done=["mri"])
    result, english, spanish = _summaries(valid_answers)
    noted = [rule for rule in result["matched_rules"] if rule in ES.notes]
    assert len(noted) == len(english["notes"]) == 3
    assert spanish["notes"] == [ES.notes[rule] for rule in noted]


def test_spanish_patient_summary_for_an_urgent_result(valid_answers: dict[str, Any]) -> None:
    valid_answers.update(rf_fever=True)
    result, _, spanish = _summaries(valid_answers)
    assert result["outcome"] == "urgent_care"
    assert spanish["headline"] == ES.headlines["urgent_care"]
    assert spanish["body"] == list(ES.bodies[result["decided_by"]])


def test_english_catalog_gives_the_engine_summary(valid_answers: dict[str, Any]) -> None:
    valid_answers.update(pacemaker_or_implanted_device=True, pain_duration="unsure")
    result = evaluate(valid_answers, RULESET)
    english = result["summary"]["patient"]
    rebuilt = CATALOGS["en"].patient_summary(english, result["decided_by"], result["matched_rules"])
    assert rebuilt == english


def test_the_summary_is_a_fresh_copy(valid_answers: dict[str, Any]) -> None:
    _, _, first = _summaries(valid_answers)
    first["body"].append("changed")
    _, _, second = _summaries(valid_answers)
    assert "changed" not in second["body"]


@pytest.mark.parametrize(
    ("decided_by", "matched"),
    [("no_such_rule", ["no_such_rule"]), ("pregnancy", ["pregnancy"]), ("under_18", ["nope"])],
)
def test_unknown_rule_ids_are_refused(decided_by: str, matched: list[str]) -> None:
    catalog: Catalog = CATALOGS["es"]
    with pytest.raises(ValueError):
        empty: PatientSummary = {"headline": "", "body": [], "notes": [], "disclaimer": ""}
        catalog.patient_summary(empty, decided_by, matched)


@pytest.mark.parametrize(
    "package", load_rules(RULES_ROOT).packages, ids=lambda p: f"{p.ruleset.id} {p.ruleset.version}"
)
def test_the_engine_builds_the_patient_summary_in_the_catalogs_language(package: Any) -> None:
    """Built once in the reader's language, the summary is what the English one translated
    was, for every case of every package."""
    for case in load_cases(package):
        english_result = evaluate(case.answers, package.ruleset)
        decided, matched = english_result["decided_by"], english_result["matched_rules"]
        english = english_result["summary"]["patient"]
        for language, catalog in package.catalogs.items():
            result = evaluate(case.answers, package.ruleset, catalog)
            expected = catalog.patient_summary(english, decided, matched)
            assert result["summary"]["patient"] == expected, (case.name, language)
            # Only the patient's words differ by language.
            assert {k: v for k, v in result.items() if k != "summary"} == {
                k: v for k, v in english_result.items() if k != "summary"
            }
            assert result["summary"]["clinician"] == english_result["summary"]["clinician"]
