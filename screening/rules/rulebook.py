"""Rule packages and the rulebook: every package loaded, and which one a request uses.

A package is one folder holding ``questionnaire.yaml``, ``ruleset.yaml``,
``cases.yaml``, ``i18n/`` and ``package.yaml`` (its status, whether it is the
default, its approval and changelog). ``SCREENING_RULES_DIR`` names one package
folder, or a folder whose subfolders, at any depth, are packages. The contract is
shared/spec/rules-lifecycle-v1.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from pathlib import Path
from typing import Any
from typing import TypedDict

from screening.rules.cases import run_cases
from screening.rules.i18n import I18N_DIR
from screening.rules.i18n import Catalog
from screening.rules.i18n import load_translations
from screening.rules.loader import CASES_FILE
from screening.rules.loader import QUESTIONNAIRE_FILE
from screening.rules.loader import RULESET_FILE
from screening.rules.loader import RulesError
from screening.rules.loader import check_schema
from screening.rules.loader import find_schema_dir
from screening.rules.loader import load_files
from screening.rules.loader import read_yaml
from screening.rules.questionnaire import Questionnaire
from screening.rules.results import QuestionnaireName
from screening.rules.ruleset import Outcome
from screening.rules.ruleset import Ruleset

PACKAGE_FILE = "package.yaml"
STATUSES = ("draft", "shadow", "active", "retired")
#: A package folder with no package.yaml is what one rules folder was before packages.
_IMPLIED = {"status": "active", "default": True, "changelog": []}


class ChoiceError(Exception):
    """A request named a questionnaire or ruleset that can't be used; ``field`` says which."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


class UnknownVersion(ChoiceError):
    """No active package serves the asked questionnaire version."""


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a MAJOR.MINOR.PATCH version (the schemas enforce the form)."""
    return tuple(int(part) for part in version.split("."))


class ChangelogEntry(TypedDict):
    """One release in a package's changelog (package.schema.json)."""

    version: str
    date: str
    changes: list[str]


class PackageSummary(TypedDict):
    """A package as ``GET /v1/rulesets`` lists it."""

    id: str
    version: str
    sha256: str
    status: str
    default: bool
    questionnaire: QuestionnaireName
    approved_by: str | None
    approved_on: str | None


@dataclass(frozen=True, slots=True)
class Package:
    """One rule package: its questionnaire, ruleset, translations and release state."""

    directory: Path
    schema_dir: Path
    questionnaire: Questionnaire
    ruleset: Ruleset
    catalogs: Mapping[str, Catalog]
    status: str
    default: bool
    approved_by: str | None = None
    approved_on: str | None = None
    changelog: tuple[ChangelogEntry, ...] = ()
    has_package_file: bool = True

    @property
    def id(self) -> str:
        """The ruleset id, which names the package."""
        return self.ruleset.id

    @property
    def version(self) -> str:
        """The ruleset version."""
        return self.ruleset.version

    @property
    def cases_path(self) -> Path:
        """Where the package's rule cases live."""
        return self.directory / CASES_FILE

    @property
    def cases_must_pass(self) -> bool:
        """Whether loading refuses this package when its cases fail or leave a rule
        uncovered: an active one (a lone folder without package.yaml is let through)."""
        return self.status == "active" and self.has_package_file

    @property
    def questionnaire_ref(self) -> tuple[str, str]:
        """The questionnaire id and version the package applies to."""
        return (self.questionnaire.id, self.questionnaire.version)

    def summary(self) -> PackageSummary:
        """The package as ``GET /v1/rulesets`` lists it."""
        return {
            "id": self.id,
            "version": self.version,
            "sha256": self.ruleset.sha256,
            "status": self.status,
            "default": self.default,
            "questionnaire": {"id": self.questionnaire.id, "version": self.questionnaire.version},
            "approved_by": self.approved_by,
            "approved_on": self.approved_on,
        }

    def describe(self) -> str:
        """``lumbar-rfa 1.1.0`` for messages."""
        return f"{self.id} {self.version}"


def _fingerprint(directory: Path, schema_dir: Path) -> str:
    """A digest of everything a package's loading and case run read: its files and schemas."""
    digest = hashlib.sha256()
    names = (QUESTIONNAIRE_FILE, RULESET_FILE, CASES_FILE, PACKAGE_FILE)
    files = [
        *(directory / name for name in names),
        *sorted((directory / I18N_DIR).glob("*.yaml")),
        *sorted(schema_dir.glob("*.schema.json")),
    ]
    for path in files:
        digest.update(str(path).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing")
    return digest.hexdigest()


#: Packages (and their case problems) already loaded in this process, by fingerprint: a
#: package is immutable once loaded, and a process (a test run above all) loads the same
#: folders again for every app it makes. Reading the files to fingerprint them is cheap
#: beside parsing and checking them.
_LOADED: dict[str, Package] = {}
_CASE_PROBLEMS: dict[str, list[str]] = {}
_LOADED_LIMIT = 64


def load_package(directory: Path | str, schema_dir: Path | None = None) -> Package:
    """Load and check one package folder (questionnaire, ruleset, translations, package.yaml)."""
    directory = Path(directory)
    schema_dir = schema_dir or find_schema_dir(directory)
    fingerprint = _fingerprint(directory, schema_dir)
    if fingerprint not in _LOADED:
        if len(_LOADED) >= _LOADED_LIMIT:
            _LOADED.clear()
            _CASE_PROBLEMS.clear()
        _LOADED[fingerprint] = _load_package(directory, schema_dir)
    return _LOADED[fingerprint]


def _load_package(directory: Path, schema_dir: Path) -> Package:
    questionnaire, ruleset = load_files(directory, schema_dir)
    catalogs = load_translations(directory, questionnaire, ruleset, schema_dir)
    path = directory / PACKAGE_FILE
    has_file = path.is_file()
    data: dict[str, Any] = dict(_IMPLIED)
    if has_file:
        data, _ = read_yaml(path)
        # YAML reads an unquoted date as a date; the schema checks the text form.
        data = _dates_as_text(data)
        problems = check_schema(path, data, schema_dir, "package.schema.json")
        if problems:
            raise RulesError(problems)
        problems = list(_package_problems(path, data))
        if problems:
            raise RulesError(problems)
    return Package(
        directory=directory,
        schema_dir=schema_dir,
        questionnaire=questionnaire,
        ruleset=ruleset,
        catalogs=catalogs,
        status=data["status"],
        default=data["default"],
        approved_by=data.get("approved_by"),
        approved_on=data.get("approved_on"),
        changelog=tuple(data.get("changelog", ())),
        has_package_file=has_file,
    )


def _dates_as_text(node: Any) -> Any:
    if isinstance(node, date):
        return node.isoformat()
    if isinstance(node, dict):
        return {key: _dates_as_text(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_dates_as_text(value) for value in node]
    return node


def _package_problems(path: Path, data: Mapping[str, Any]) -> Iterable[str]:
    """What package.yaml itself gets wrong."""
    if data["status"] in ("active", "shadow") and not (
        data.get("approved_by") and data.get("approved_on")
    ):
        yield f"{path}: status '{data['status']}' needs approved_by and approved_on"
    if data["default"] and data["status"] != "active":
        yield f"{path}: default: true needs status 'active' (this package is '{data['status']}')"


def case_problems(package: Package) -> list[str]:
    """Where a package's own cases fail or leave a rule uncovered, each naming its file."""
    fingerprint = _fingerprint(package.directory, package.schema_dir)
    if fingerprint not in _CASE_PROBLEMS:
        report = run_cases(package)
        _CASE_PROBLEMS[fingerprint] = [
            f"{package.cases_path}: {line}" for line in report.failures + report.uncovered
        ]
    return list(_CASE_PROBLEMS[fingerprint])


def find_package_dirs(root: Path) -> list[Path]:
    """``root`` itself when it is a package, else every package folder under it, sorted."""
    if (root / QUESTIONNAIRE_FILE).is_file():
        return [root]
    return sorted(path.parent for path in root.rglob(QUESTIONNAIRE_FILE))


def _catalog_problems(packages: list[Package]) -> Iterable[str]:
    """The checks across packages that rules-lifecycle-v1.md lists."""
    seen: dict[tuple[str, str], Package] = {}
    questionnaires: dict[tuple[str, str], Package] = {}
    for package in packages:
        key = (package.id, package.version)
        if key in seen:
            yield (
                f"{package.directory}: ruleset {package.describe()} is also in "
                f"{seen[key].directory}"
            )
        seen.setdefault(key, package)
        first = questionnaires.setdefault(package.questionnaire_ref, package)
        if first.questionnaire.sha256 != package.questionnaire.sha256:
            q_id, q_version = package.questionnaire_ref
            yield (
                f"{package.directory}: questionnaire {q_id} {q_version} differs from the one "
                f"in {first.directory} (same id and version, different content)"
            )
    indicators: dict[str, tuple[str, Package]] = {}
    for package in packages:
        for outcome in package.ruleset.outcomes.values():
            indicator, declared = indicators.setdefault(outcome.code, (outcome.indicator, package))
            if indicator != outcome.indicator:
                yield (
                    f"{package.directory}: outcome '{outcome.code}' is '{outcome.indicator}', "
                    f"but '{indicator}' in {declared.directory}: an outcome code sorts into one "
                    "triage band, whichever package decided"
                )
    for (q_id, q_version), _ in questionnaires.items():
        active = [
            p for p in packages if p.questionnaire_ref == (q_id, q_version) and p.status == "active"
        ]
        defaults = [p for p in active if p.default]
        if active and not defaults:
            yield (
                f"questionnaire {q_id} {q_version}: no active package is the default "
                f"(set default: true in one of {', '.join(str(p.directory) for p in active)})"
            )
        if len(defaults) > 1:
            yield (
                f"questionnaire {q_id} {q_version}: {len(defaults)} packages are the default "
                f"({', '.join(str(p.directory) for p in defaults)}); keep one"
            )


def load_rules(directory: Path | str) -> Rulebook:
    """Load every package under ``directory`` and check each, then all of them together."""
    root = Path(directory)
    if not root.is_dir():
        raise RulesError([f"{root}: rules folder not found"])
    dirs = find_package_dirs(root)
    if not dirs:
        raise RulesError([f"{root}: no rule package found (no {QUESTIONNAIRE_FILE} in any folder)"])
    packages: list[Package] = []
    problems: list[str] = []
    for folder in dirs:
        try:
            packages.append(load_package(folder))
        except RulesError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RulesError(problems)
    problems.extend(_catalog_problems(packages))
    for package in packages:
        if package.cases_must_pass:
            problems.extend(case_problems(package))
    if problems:
        raise RulesError(problems)
    return Rulebook(directory=root, packages=tuple(packages))


@dataclass(frozen=True, slots=True)
class Rulebook:
    """Every loaded package, and the choice of package for a request.

    ``questionnaire``, ``ruleset`` and ``catalogs`` are the default package's:
    the highest questionnaire version that has an active default package.
    """

    directory: Path
    packages: tuple[Package, ...]
    _defaults: dict[tuple[str, str], Package] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Worked out once: the request path asks for these on every screening.
    _default: Package = field(init=False, repr=False, compare=False)
    _sorted: tuple[Package, ...] = field(init=False, repr=False, compare=False)
    _shadows: dict[tuple[str, str], tuple[Package, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # By (ruleset id, version), and questionnaires by (id, version): read on every
    # stored screening shown.
    _by_ref: dict[tuple[str, str], Package] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _questionnaires: dict[tuple[str, str], Questionnaire] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    #: Each outcome code any package declares, and the package whose words name it (the
    #: default's where it declares the code).
    _outcome_words: dict[str, Package] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _outcomes: dict[str, Outcome] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for package in self.packages:
            self._by_ref[package.id, package.version] = package
            for code in package.ruleset.outcomes:
                self._outcome_words.setdefault(code, package)
            # Packages naming the same questionnaire hold the same one (checked on load).
            self._questionnaires.setdefault(package.questionnaire_ref, package.questionnaire)
            if package.status == "active" and package.default:
                self._defaults[package.questionnaire_ref] = package
        if not self._defaults:
            raise RulesError([f"{self.directory}: no active default package"])
        highest = max(self._defaults.values(), key=lambda p: version_key(p.questionnaire.version))
        object.__setattr__(self, "_default", highest)
        # The default package's words first, in its order; then codes only others declare.
        words = {code: highest for code in highest.ruleset.outcomes}
        object.__setattr__(self, "_outcome_words", {**words, **self._outcome_words, **words})
        outcomes = {code: p.ruleset.outcomes[code] for code, p in self._outcome_words.items()}
        object.__setattr__(self, "_outcomes", outcomes)
        by_version = sorted(self.packages, key=lambda p: (p.id, version_key(p.version)))
        object.__setattr__(self, "_sorted", tuple(by_version))
        for package in by_version:
            if package.status == "shadow":
                ref = package.questionnaire_ref
                self._shadows[ref] = (*self._shadows.get(ref, ()), package)

    # --- the default package ---------------------------------------------------------

    @property
    def default(self) -> Package:
        """The default package of the highest questionnaire version served."""
        return self._default

    @property
    def questionnaire(self) -> Questionnaire:
        """The default questionnaire."""
        return self.default.questionnaire

    @property
    def ruleset(self) -> Ruleset:
        """The default ruleset (of the default questionnaire)."""
        return self.default.ruleset

    @property
    def catalogs(self) -> Mapping[str, Catalog]:
        """The default package's patient texts by language."""
        return self.default.catalogs

    @property
    def cases_path(self) -> Path:
        """The default package's cases."""
        return self.default.cases_path

    @property
    def schema_dir(self) -> Path:
        """The default package's schemas."""
        return self.default.schema_dir

    @property
    def outcomes(self) -> dict[str, Outcome]:
        """Every outcome any package declares, by code: the default package's first, in its
        order, then those only other packages declare (a stored screening may carry any).
        Each in the words of the default package where it declares the code."""
        return self._outcomes

    def outcome_package(self, code: str) -> Package | None:
        """The package whose words name an outcome code (None: no package declares it)."""
        return self._outcome_words.get(code)

    # --- finding packages ------------------------------------------------------------

    def package(self, ruleset_id: str, version: str) -> Package | None:
        """The package of one ruleset id and version, whatever its status."""
        return self._by_ref.get((ruleset_id, version))

    def package_or_default(self, ruleset_id: str, version: str) -> Package:
        """The package of a ruleset id and version if still loaded, else the default one.

        For words about a stored screening (outcome labels, rule titles): those of the
        rules that decided it, while they are loaded.
        """
        return self._by_ref.get((ruleset_id, version), self._default)

    def questionnaire_of(self, questionnaire_id: str, version: str) -> Questionnaire:
        """A loaded questionnaire by id and version (whatever its packages' status), else
        the default questionnaire."""
        return self._questionnaires.get((questionnaire_id, version), self._default.questionnaire)

    def sorted_packages(self) -> tuple[Package, ...]:
        """Every package by ruleset id, then version."""
        return self._sorted

    def questionnaire_versions(self) -> list[str]:
        """The questionnaire versions served (those with an active default), lowest first."""
        return sorted({v for _, v in self._defaults}, key=version_key)

    def for_questionnaire(self, version: str | None = None) -> Package:
        """The default package of a questionnaire version (None: the default questionnaire)."""
        if version is None:
            return self.default
        for (_, q_version), package in self._defaults.items():
            if q_version == version:
                return package
        raise UnknownVersion(
            "version",
            f"No questionnaire version {version} is served. "
            f"Served: {', '.join(self.questionnaire_versions())}.",
        )

    def for_canonical(self, url: str, version: str) -> Package | None:
        """The default package of the served questionnaire with this canonical URL and version."""
        for package in self._defaults.values():
            if (package.questionnaire.url, package.questionnaire.version) == (url, version):
                return package
        return None

    def shadows(self, questionnaire: Questionnaire) -> tuple[Package, ...]:
        """The shadow packages that apply to a questionnaire, by ruleset id and version."""
        return self._shadows.get((questionnaire.id, questionnaire.version), ())

    # --- choosing for a request --------------------------------------------------------

    def choose(
        self, questionnaire: Mapping[str, str] | None, ruleset: Mapping[str, Any] | None
    ) -> Package:
        """The package a request uses, from its optional questionnaire and ruleset references.

        Raises ``ChoiceError`` naming ``questionnaire`` or ``ruleset`` when the
        reference can't be used: unknown, draft, shadow, retired or mismatched.
        """
        q_ref = None
        if questionnaire is not None:
            q_ref = (questionnaire["id"], questionnaire["version"])
            if q_ref not in self._defaults:
                served = ", ".join(f"{q} {v}" for q, v in sorted(self._defaults))
                raise ChoiceError(
                    "questionnaire",
                    f"Questionnaire {q_ref[0]} version {q_ref[1]} is not served. Served: {served}.",
                )
        if ruleset is None:
            return self.default if q_ref is None else self._defaults[q_ref]
        return self._choose_ruleset(q_ref, ruleset["id"], ruleset.get("version"))

    def _choose_ruleset(
        self, q_ref: tuple[str, str] | None, ruleset_id: str, version: str | None
    ) -> Package:
        same_id = [p for p in self.packages if p.id == ruleset_id]
        if not same_id:
            raise ChoiceError("ruleset", f"There is no ruleset {ruleset_id}.")
        if version is not None:
            package = self.package(ruleset_id, version)
            if package is None:
                raise ChoiceError("ruleset", f"There is no ruleset {ruleset_id} version {version}.")
            if package.status != "active":
                raise ChoiceError(
                    "ruleset",
                    f"Ruleset {ruleset_id} version {version} is {package.status}: "
                    "only active rulesets decide screenings.",
                )
            if q_ref is not None and package.questionnaire_ref != q_ref:
                raise ChoiceError(
                    "ruleset",
                    f"Ruleset {ruleset_id} version {version} applies to questionnaire "
                    f"{package.questionnaire.id} version {package.questionnaire.version}, "
                    f"not {q_ref[0]} version {q_ref[1]}.",
                )
            return package
        candidates = [
            p
            for p in same_id
            if p.status == "active" and (q_ref is None or p.questionnaire_ref == q_ref)
        ]
        if not candidates:
            where = "" if q_ref is None else f" for questionnaire {q_ref[0]} version {q_ref[1]}"
            raise ChoiceError("ruleset", f"No active version of ruleset {ruleset_id}{where}.")
        return max(candidates, key=lambda p: version_key(p.version))
