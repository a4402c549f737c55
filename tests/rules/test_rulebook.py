"""Rule packages: loading a folder of them, the package-level checks, and choosing one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from screening.rules.loader import RulesError
from screening.rules.rulebook import ChoiceError
from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import UnknownVersion
from screening.rules.rulebook import load_package
from screening.rules.rulebook import load_rules
from tests.support.app import FIFTH_OUTCOME
from tests.support.app import FIFTH_PACKAGE
from tests.support.app import RULES_ROOT
from tests.support.app import fifth_outcome_tree
from tests.support.app import make_app

SHIPPED = load_rules(RULES_ROOT)
Q = "lumbar-rfa-screening"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of the shipped rules folder (packages and schemas)."""
    target = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, target)
    return target


def _edit_yaml(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def new_version(tree: Path, source: str, version: str, **package: Any) -> Path:
    """Copy package lumbar-rfa ``source`` as ``version`` (a draft unless ``package`` says)."""
    target = tree / "lumbar-rfa" / version
    shutil.copytree(tree / "lumbar-rfa" / source, target)
    _edit_yaml(target / "ruleset.yaml", lambda d: d.update(version=version))
    _edit_yaml(
        target / "i18n" / "es.yaml", lambda d: d["translates"]["ruleset"].update(version=version)
    )
    _edit_yaml(
        target / "package.yaml",
        lambda d: d.update({"status": "draft", "default": False, **package}),
    )
    return target


def _problems(root: Path) -> str:
    with pytest.raises(RulesError) as caught:
        load_rules(root)
    return str(caught.value)


def test_every_shipped_package_is_loaded() -> None:
    assert {(p.id, p.version) for p in SHIPPED.packages} >= {
        ("lumbar-rfa", "1.0.0"),
        ("lumbar-rfa", "1.1.0"),
        ("lumbar-rfa", "1.2.0"),
    }
    assert SHIPPED.questionnaire.version == "1.2.0"
    assert (SHIPPED.ruleset.id, SHIPPED.ruleset.version) == ("lumbar-rfa", "1.2.0")
    # The safety patches stand in for what they patch.
    assert SHIPPED.for_questionnaire("1.0.0").version == "1.0.1"
    assert SHIPPED.for_questionnaire("1.1.0").version == "1.1.1"


def test_one_package_folder_loads_as_before(tree: Path) -> None:
    alone = load_rules(tree / "lumbar-rfa" / "1.0.1")
    assert [(p.id, p.version) for p in alone.packages] == [("lumbar-rfa", "1.0.1")]
    assert alone.ruleset.sha256 == SHIPPED.package("lumbar-rfa", "1.0.1").ruleset.sha256  # type: ignore[union-attr]


def test_a_folder_without_package_file_is_the_active_default(tree: Path) -> None:
    folder = tree / "lumbar-rfa" / "1.0.0"
    (folder / "package.yaml").unlink()
    alone = load_rules(folder)
    assert (alone.default.status, alone.default.default) == ("active", True)


def test_one_broken_package_stops_loading_naming_its_folder(tree: Path) -> None:
    ruleset = tree / "lumbar-rfa" / "1.0.0" / "ruleset.yaml"
    ruleset.write_text(
        ruleset.read_text(encoding="utf-8").replace("{item: rf_fever,", "{item: fever,"),
        encoding="utf-8",
    )
    message = _problems(tree)
    assert f"{ruleset}: rule 'possible_infection': names unknown item 'fever'" in message


@pytest.mark.parametrize("status", ["active", "shadow"])
def test_active_and_shadow_packages_need_approval(tree: Path, status: str) -> None:
    def change(data: dict[str, Any]) -> None:
        data.update(status=status, default=status == "active")
        del data["approved_by"]

    path = tree / "lumbar-rfa" / "1.0.0" / "package.yaml"
    _edit_yaml(path, change)
    assert f"{path}: status '{status}' needs approved_by and approved_on" in _problems(tree)


def test_a_draft_needs_no_approval_and_may_fail_its_cases(tree: Path) -> None:
    draft = new_version(tree, "1.2.0", "1.3.0", approved_by=None, approved_on=None)
    _edit_yaml(
        draft / "cases.yaml", lambda d: d["cases"][0]["expect"].update(outcome="urgent_care")
    )
    rulebook = load_rules(tree)
    assert rulebook.package("lumbar-rfa", "1.3.0").status == "draft"  # type: ignore[union-attr]
    assert rulebook.ruleset.version == "1.2.0"


def test_an_active_package_whose_cases_fail_is_refused(tree: Path) -> None:
    cases = tree / "lumbar-rfa" / "1.2.0" / "cases.yaml"
    _edit_yaml(cases, lambda d: d["cases"][0]["expect"].update(outcome="urgent_care"))
    message = _problems(tree)
    assert f"{cases}: case 'no findings - discuss with a specialist': outcome is" in message


def test_an_active_package_with_an_uncovered_rule_is_refused(tree: Path) -> None:
    cases = tree / "lumbar-rfa" / "1.2.0" / "cases.yaml"
    _edit_yaml(
        cases,
        lambda d: d.update(cases=[c for c in d["cases"] if "rf_fever" not in c.get("answers", {})]),
    )
    assert "rule 'possible_infection' has no case where it matches" in _problems(tree)


def test_two_defaults_for_one_questionnaire_are_refused(tree: Path) -> None:
    new_version(tree, "1.2.0", "1.2.1", status="active", default=True)
    assert f"questionnaire {Q} 1.2.0: 2 packages are the default" in _problems(tree)


def test_active_packages_without_a_default_are_refused(tree: Path) -> None:
    _edit_yaml(tree / "lumbar-rfa" / "1.0.1" / "package.yaml", lambda d: d.update(default=False))
    assert f"questionnaire {Q} 1.0.0: no active package is the default" in _problems(tree)


def test_the_default_must_be_active(tree: Path) -> None:
    path = tree / "lumbar-rfa" / "1.0.1" / "package.yaml"
    _edit_yaml(path, lambda d: d.update(status="retired"))
    assert f"{path}: default: true needs status 'active'" in _problems(tree)


def test_the_same_ruleset_version_twice_is_refused_naming_both(tree: Path) -> None:
    copy = tree / "copy" / "lumbar-rfa-1.0.0"
    shutil.copytree(tree / "lumbar-rfa" / "1.0.0", copy)
    _edit_yaml(copy / "package.yaml", lambda d: d.update(status="draft", default=False))
    message = _problems(tree)
    assert "ruleset lumbar-rfa 1.0.0 is also in" in message
    assert str(copy) in message and str(tree / "lumbar-rfa" / "1.0.0") in message


def test_one_questionnaire_version_with_two_contents_is_refused_naming_both(tree: Path) -> None:
    copy = new_version(tree, "1.0.1", "1.0.2")
    q = copy / "questionnaire.yaml"
    q.write_text(q.read_text(encoding="utf-8").replace("How old", "How old exactly"), "utf-8")
    message = _problems(tree)
    assert f"questionnaire {Q} 1.0.0 differs from the one in" in message
    # The first package found with that questionnaire version is named beside it.
    assert str(copy) in message and str(tree / "lumbar-rfa" / "1.0.0") in message


def test_one_outcome_code_with_two_indicators_is_refused_naming_both(tree: Path) -> None:
    # A draft too: a screening it decides in replay or shadow is triaged by the code.
    copy = new_version(tree, "1.2.0", "1.3.0")

    def demote(data: dict[str, Any]) -> None:
        (outcome,) = [o for o in data["outcomes"] if o["code"] == "urgent_care"]
        outcome["indicator"] = "warning"

    _edit_yaml(copy / "ruleset.yaml", demote)
    message = _problems(tree)
    assert "outcome 'urgent_care' is 'warning', but 'critical' in" in message
    assert str(copy) in message


def test_the_outcomes_of_every_package_the_newest_defaults_words_first(tmp_path: Path) -> None:
    assert list(SHIPPED.outcomes) == list(SHIPPED.ruleset.outcomes)
    rulebook = load_rules(fifth_outcome_tree(tmp_path))
    assert list(rulebook.outcomes) == [*SHIPPED.ruleset.outcomes, FIFTH_OUTCOME]
    physio = rulebook.outcome_package(FIFTH_OUTCOME)
    assert physio is not None and (physio.id, physio.version) == FIFTH_PACKAGE
    assert rulebook.outcomes[FIFTH_OUTCOME].indicator == "warning"
    # A code every package declares is named in the newest default package's words.
    assert rulebook.outcome_package("urgent_care") is rulebook.default
    assert rulebook.outcome_package("sunshine") is None


def test_package_file_is_schema_checked(tree: Path) -> None:
    path = tree / "lumbar-rfa" / "1.0.0" / "package.yaml"
    _edit_yaml(path, lambda d: d.update(status="live"))
    assert f"{path}: status: 'live' is not one of" in _problems(tree)


# --- choosing ------------------------------------------------------------------------


def _ref(version: str) -> dict[str, str]:
    return {"id": Q, "version": version}


def test_choose_defaults() -> None:
    assert SHIPPED.choose(None, None).version == "1.2.0"
    assert SHIPPED.choose(_ref("1.0.0"), None).version == "1.0.1"
    assert SHIPPED.choose(None, {"id": "lumbar-rfa"}).version == "1.2.0"
    assert SHIPPED.choose(_ref("1.0.0"), {"id": "lumbar-rfa"}).version == "1.0.1"
    assert SHIPPED.choose(None, {"id": "lumbar-rfa", "version": "1.0.1"}).version == "1.0.1"
    assert SHIPPED.choose(_ref("1.1.0"), {"id": "lumbar-rfa-cms"}).version == "1.0.1"
    assert SHIPPED.choose(None, {"id": "lumbar-rfa-cms"}).version == "1.1.0"


@pytest.mark.parametrize(
    ("questionnaire", "ruleset", "field"),
    [
        (_ref("9.9.9"), None, "questionnaire"),
        ({"id": "other", "version": "1.0.0"}, None, "questionnaire"),
        (None, {"id": "nothing"}, "ruleset"),
        (None, {"id": "lumbar-rfa", "version": "9.9.9"}, "ruleset"),
        (_ref("1.1.0"), {"id": "lumbar-rfa", "version": "1.0.1"}, "ruleset"),
        (None, {"id": "lumbar-rfa", "version": "1.1.0"}, "ruleset"),
    ],
)
def test_choose_refuses(
    questionnaire: dict[str, str] | None, ruleset: dict[str, str] | None, field: str
) -> None:
    with pytest.raises(ChoiceError) as caught:
        SHIPPED.choose(questionnaire, ruleset)
    assert caught.value.field == field


@pytest.mark.parametrize("status", ["draft", "shadow", "retired"])
def test_choose_refuses_a_package_that_is_not_active(tree: Path, status: str) -> None:
    new_version(tree, "1.2.0", "1.3.0", status=status)
    rulebook: Rulebook = load_rules(tree)
    with pytest.raises(ChoiceError, match=f"is {status}") as caught:
        rulebook.choose(None, {"id": "lumbar-rfa", "version": "1.3.0"})
    assert caught.value.field == "ruleset"
    # Without a version, the highest active one is used.
    assert rulebook.choose(None, {"id": "lumbar-rfa"}).version == "1.2.0"


def test_finding_a_stored_screenings_package_and_questionnaire() -> None:
    older = SHIPPED.package("lumbar-rfa", "1.0.0")
    assert older is not None and older.version == "1.0.0"
    assert SHIPPED.package("lumbar-rfa", "9.9.9") is None
    # Words for a screening whose rules are gone come from the default package.
    assert SHIPPED.package_or_default("lumbar-rfa", "1.0.0") is older
    assert SHIPPED.package_or_default("gone", "1.0.0") is SHIPPED.default
    assert SHIPPED.questionnaire_of(Q, "1.0.0") is older.questionnaire
    assert SHIPPED.questionnaire_of(Q, "9.9.9") is SHIPPED.questionnaire


def test_a_canonical_reference_finds_its_questionnaires_default_package() -> None:
    url = SHIPPED.questionnaire.url
    assert SHIPPED.for_canonical(url, "1.0.0") is SHIPPED.for_questionnaire("1.0.0")
    assert SHIPPED.for_canonical(url, "1.2.0") is SHIPPED.default
    assert SHIPPED.for_canonical(url, "9.9.9") is None
    assert SHIPPED.for_canonical("http://example.org/other", "1.2.0") is None


def test_unknown_questionnaire_version() -> None:
    with pytest.raises(UnknownVersion, match="9.9.9"):
        SHIPPED.for_questionnaire("9.9.9")


def test_rules_check_reports_a_drafts_failing_case_once(tree: Path, database_url: str) -> None:
    draft = new_version(tree, "1.2.0", "1.3.0", approved_by=None, approved_on=None)
    _edit_yaml(
        draft / "cases.yaml", lambda d: d["cases"][0]["expect"].update(outcome="urgent_care")
    )
    # Start-up lets a draft with failing cases through; rules check tells its author.
    with make_app(database_url, RULES_DIR=str(tree)) as app:
        result = app.test_cli_runner().invoke(args=["rules", "check"])
    assert result.exit_code == 1
    failing = [line for line in result.output.splitlines() if "1.3.0/cases.yaml" in line]
    assert len(failing) == 1, result.output
    assert "urgent_care" in failing[0]


def test_a_package_loaded_again_unchanged_is_the_same_and_an_edit_is_read(tree: Path) -> None:
    folder = tree / "lumbar-rfa" / "1.2.0"
    first = load_package(folder)
    assert load_package(folder) is first
    ruleset = folder / "ruleset.yaml"
    ruleset.write_text(
        ruleset.read_text(encoding="utf-8").replace(
            "title: Under 18 years old", "title: Younger than 18"
        ),
        encoding="utf-8",
    )
    again = load_package(folder)
    assert again is not first
    assert "Younger than 18" in {rule.title for rule in again.ruleset.rules}
