"""The lock files: complete, hashed, in step with pyproject.toml, and what is installed.

``make lock`` writes ``requirements/dev.txt`` (make run, make test) and
``requirements/runtime.txt`` (the image); these tests fail when pyproject.toml
has moved on without them, so a stale lock is caught before it ships.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from screening import PROJECT_ROOT

REQUIREMENTS = PROJECT_ROOT / "requirements"
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    """One locked package: its exact version, the platforms it is for, and its hashes."""

    requirement: Requirement
    hashes: int

    @property
    def name(self) -> str:
        """The package's normalized name."""
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> Version:
        """The one version the lock allows."""
        (spec,) = self.requirement.specifier
        assert spec.operator == "==", self.requirement
        return Version(spec.version)

    def applies(self) -> bool:
        """Whether the pin is for this interpreter and platform."""
        marker = self.requirement.marker
        return marker is None or marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    """The pins of a requirements file as ``uv pip compile --generate-hashes`` writes it."""
    entries: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].rstrip() if not line.lstrip().startswith("--") else line
        if not text.strip():
            continue
        if line[:1].isspace() and entries:
            entries[-1] += " " + text.strip()
        else:
            entries.append(text.strip())
    pins = []
    for entry in entries:
        spec = entry.split(" --hash", 1)[0].rstrip(" \\")
        pins.append(Pin(Requirement(spec), len(_HASH.findall(entry))))
    return pins


DEV = read_lock(REQUIREMENTS / "dev.txt")
RUNTIME = read_lock(REQUIREMENTS / "runtime.txt")


def _versions(pins: list[Pin]) -> dict[str, list[Version]]:
    found: dict[str, list[Version]] = {}
    for pin in pins:
        if pin.applies():
            found.setdefault(pin.name, []).append(pin.version)
    return found


def _check_satisfied(requirements: list[str], pins: list[Pin], lock: str) -> None:
    """Fail unless every requirement that applies here has a locked version it accepts."""
    versions = _versions(pins)
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(PYPROJECT["project"]["name"]):
            continue  # the project's own extras ("spine-screening[test]")
        locked = versions.get(name)
        assert locked, f"{text} is not in {lock}: run make lock"
        assert all(requirement.specifier.contains(v, prereleases=True) for v in locked), (
            f"{lock} locks {name} {locked}, outside {text}: run make lock"
        )


@pytest.mark.parametrize("pins", [DEV, RUNTIME], ids=["dev", "runtime"])
def test_every_pin_is_exact_and_hashed(pins: list[Pin]) -> None:
    assert pins
    for pin in pins:
        assert pin.hashes >= 1, pin.requirement
        assert pin.version


def test_the_runtime_lock_holds_what_the_service_needs_and_nothing_else() -> None:
    _check_satisfied(PYPROJECT["project"]["dependencies"], RUNTIME, "runtime.txt")
    names = {pin.name for pin in RUNTIME}
    for tool in ("pytest", "hypothesis", "ruff", "mypy", "playwright", "uv", "pip"):
        assert tool not in names, f"runtime.txt holds {tool}, which the service does not use"


def test_the_dev_lock_holds_every_extra_and_what_installs_the_project() -> None:
    project = PYPROJECT["project"]
    _check_satisfied(project["dependencies"], DEV, "dev.txt")
    for extra in project["optional-dependencies"].values():
        _check_satisfied(extra, DEV, "dev.txt")
    _check_satisfied(PYPROJECT["build-system"]["requires"], DEV, "dev.txt")
    install = (REQUIREMENTS / "install.in").read_text(encoding="utf-8").splitlines()
    _check_satisfied([line for line in install if line and not line.startswith("#")], DEV, "dev")


def test_both_locks_agree_on_every_version() -> None:
    dev = {(pin.name, str(pin.requirement.marker)): pin.version for pin in DEV}
    for pin in RUNTIME:
        # The same pin under the same marker, or one for every platform (a development tool
        # may need everywhere what the service needs on one platform: tzdata, on Windows only
        # for psycopg, everywhere for python-dateutil).
        same = dev.get((pin.name, str(pin.requirement.marker)))
        everywhere = dev.get((pin.name, "None"))
        assert pin.version in {same, everywhere}, pin.requirement


def test_the_floors_stay_past_the_known_advisories() -> None:
    """The advisories docs/developers.md "Dependencies and the lock" names: the locks can't go
    back below them."""
    floors = {
        "requests": "2.32.4",  # CVE-2024-47081
        "python-json-logger": "3.3.0",  # CVE-2025-27607
        "flask": "3.1.1",  # CVE-2025-47278
        "werkzeug": "3.1.5",  # CVE-2025-66221, GHSA-87hc-h4r5-73f7
        "marshmallow": "4.1.2",  # CVE-2025-68480
        "setuptools": "78.1.1",  # CVE-2025-47273
        "pip": "25.3",  # CVE-2025-8869
        "pyjwt": "2.10.1",  # CVE-2024-53861
    }
    versions = _versions(DEV)
    for name, floor in floors.items():
        assert all(v >= Version(floor) for v in versions[name]), (name, versions[name])


def test_this_environment_is_the_lock() -> None:
    """make install installed exactly the dev lock (a stale .venv fails here)."""
    for pin in DEV:
        if not pin.applies():
            continue
        try:
            installed = importlib.metadata.version(pin.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{pin.name} {pin.version} is locked but not installed: run make install")
        assert Version(installed) == pin.version, (pin.name, installed, str(pin.version))
