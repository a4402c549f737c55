"""The vignette table (docs/clinical-safety/vignettes.yaml): realistic patients, decided as written.

Every vignette runs on every package that is not retired, in the answers that
package's questionnaire asks; each must give the outcome and deciding rule the
table states for that package, and its result must keep every rule of
clinical-safety-v1.md (tests/support/safety.py), in English and Spanish.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from screening import PROJECT_ROOT
from screening.rules.engine import evaluate
from screening.rules.rulebook import Package
from tests.support.clinical_texts import documented
from tests.support.safety import problems
from tests.support.safety import spanish_problems
from tools.realistic import for_questionnaire

TABLE = yaml.safe_load(
    (PROJECT_ROOT / "docs" / "clinical-safety" / "vignettes.yaml").read_text(encoding="utf-8")
)
PACKAGES = documented()


def expected(vignette: dict[str, Any], package: Package) -> list[str] | None:
    """The table's [outcome, deciding rule] for one package: the most specific key wins."""
    expect = vignette["expect"]
    for key in (package.describe(), package.id, "all"):
        if key in expect:
            return list(expect[key])
    return None


RUNS = [
    pytest.param(vignette, package, id=f"{vignette['id']} {package.describe()}")
    for vignette in TABLE["vignettes"]
    for package in PACKAGES
]


def test_the_table_is_far_beyond_the_cases() -> None:
    ids = [vignette["id"] for vignette in TABLE["vignettes"]]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)
    outcomes = {
        tuple(value)[0] for vignette in TABLE["vignettes"] for value in vignette["expect"].values()
    }
    assert outcomes == {
        "urgent_care",
        "see_primary_care",
        "continue_conservative_care",
        "discuss_with_specialist",
    }


@pytest.mark.parametrize(("vignette", "package"), RUNS)
def test_each_vignette_is_decided_as_the_table_says(
    vignette: dict[str, Any], package: Package
) -> None:
    answers = {**TABLE["defaults"], **vignette["answers"]}
    answers = {key: value for key, value in answers.items() if value is not None}
    asked = for_questionnaire(answers, package.questionnaire)
    clean, errors = package.questionnaire.validate(asked)
    assert errors == {}, errors
    result = evaluate(clean, package.ruleset)
    want = expected(vignette, package)
    assert want is not None, f"the table says nothing for {package.describe()}"
    assert [result["outcome"], result["decided_by"]] == want, vignette["patient"]
    assert problems(package, clean, result) == []
    assert spanish_problems(package, result) == []
