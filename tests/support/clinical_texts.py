"""docs/clinical-safety/texts/<ruleset>-<version>.md: every text each case of a package gives.

For every package not retired (drafts and shadows included: their words are the ones
under review), each valid case of its ``cases.yaml`` is evaluated and everything a
patient and a clinician would read is written out: the patient summary in each
language, the clinician label, card, findings and notes. A wording change then shows
up in review as a change to these files. ``tests/rules/test_clinical_texts.py`` fails
when a file is not what the rules give now; ``make texts`` writes them again.
"""

from __future__ import annotations

from pathlib import Path

from screening import PROJECT_ROOT
from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.results import ClinicianSummary
from screening.rules.results import PatientSummary
from screening.rules.rulebook import Package
from screening.rules.rulebook import load_rules

TEXTS_DIR = PROJECT_ROOT / "docs" / "clinical-safety" / "texts"
RULES_ROOT = PROJECT_ROOT / "rules"
LANGUAGE_NAMES = {"en": "English", "es": "Spanish"}
#: How each language's section marks a note (the service shows notes as a list).
NOTE_WORD = {"en": "Note", "es": "Nota"}


def documented(rules_root: Path = RULES_ROOT) -> list[Package]:
    """The packages whose texts are kept: every one not retired, by id and version."""
    return [p for p in load_rules(rules_root).sorted_packages() if p.status != "retired"]


def file_name(package: Package) -> str:
    """``lumbar-rfa-1.2.0.md``."""
    return f"{package.id}-{package.version}.md"


def _patient(lines: list[str], summary: PatientSummary, language: str) -> None:
    lines.append(f"Patient ({LANGUAGE_NAMES[language]}):")
    lines.append("")
    lines.append(f"> **{summary['headline']}**")
    for sentence in summary["body"]:
        lines.append(f"> {sentence}")
    for note in summary["notes"]:
        lines.append(f"> *{NOTE_WORD[language]}:* {note}")
    lines.append(f"> *{summary['disclaimer']}*")
    lines.append("")


def _clinician(lines: list[str], clinician: ClinicianSummary) -> None:
    lines.append(f"Clinician: **{clinician['outcome_label']}**. Card: {clinician['card_summary']}")
    lines.append("")
    for finding in clinician["findings"]:
        sources = ", ".join(finding["sources"])
        lines.append(f"- Finding, {finding['title']} [{sources}]: {finding['text']}")
    for note in clinician["notes"]:
        sources = ", ".join(note["sources"])
        lines.append(f"- Note, {note['title']} [{sources}]: {note['text']}")
    lines.append("")


def render(package: Package) -> str:
    """The texts file of one package."""
    q, r = package.questionnaire, package.ruleset
    lines = [
        f"# {package.describe()}: every text its cases give",
        "",
        f"Status {package.status}{', default' if package.default else ''}; questionnaire "
        f"{q.id} {q.version}; ruleset sha256 `{r.sha256}`.",
        "",
        f"Written from `rules/{package.id}/{package.version}/` by `make texts` and checked by "
        "`tests/rules/test_clinical_texts.py`: do not edit by hand. Each case of the "
        "package's `cases.yaml` with valid answers, in its order, with what the patient "
        "reads in each language and what the clinician reads.",
        "",
    ]
    for case in load_cases(package):
        if "errors" in case.expect:
            continue
        answers, errors = q.validate(case.answers)
        assert not errors, (package.describe(), case.name, errors)
        result = evaluate(answers, r)
        lines.append(f"## {case.name}")
        lines.append("")
        lines.append(f"`{result['outcome']}`, decided by `{result['decided_by']}`.")
        lines.append("")
        english = result["summary"]["patient"]
        for language, catalog in package.catalogs.items():
            summary = (
                english
                if language == "en"
                else catalog.patient_summary(english, result["decided_by"], result["matched_rules"])
            )
            _patient(lines, summary, language)
        _clinician(lines, result["summary"]["clinician"])
    return "\n".join(lines).rstrip() + "\n"


def write(rules_root: Path = RULES_ROOT, folder: Path = TEXTS_DIR) -> list[Path]:
    """Write every documented package's file and remove files no package has."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for package in documented(rules_root):
        path = folder / file_name(package)
        path.write_text(render(package), encoding="utf-8")
        written.append(path)
    for stale in set(folder.glob("*.md")) - set(written):
        stale.unlink()
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(PROJECT_ROOT))
