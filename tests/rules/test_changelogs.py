"""Each package's changelog (clinical-safety-v1.md: "what changed and why, in plain words"):
newest first, and the history a newer package carries is the older packages' own words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from tests.support.app import RULES_ROOT

PACKAGES = sorted(RULES_ROOT.glob("*/*/package.yaml"))


def _changelog(path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["changelog"]
    return entries


def _name(path: Path) -> str:
    return f"{path.parent.parent.name} {path.parent.name}"


@pytest.mark.parametrize("path", PACKAGES, ids=_name)
def test_the_changelog_starts_with_this_version_and_goes_back_in_order(path: Path) -> None:
    versions = [Version(str(entry["version"])) for entry in _changelog(path)]
    assert versions[0] == Version(path.parent.name)
    assert versions == sorted(versions, reverse=True)
    assert all(entry["changes"] for entry in _changelog(path))


@pytest.mark.parametrize("path", PACKAGES, ids=_name)
def test_an_earlier_versions_entry_is_that_packages_own(path: Path) -> None:
    """A copy that drifts from the package it describes says something that package does not."""
    for entry in _changelog(path)[1:]:
        earlier = path.parent.parent / str(entry["version"]) / "package.yaml"
        if earlier.exists():
            (own,) = [e for e in _changelog(earlier) if str(e["version"]) == str(entry["version"])]
            assert entry["changes"] == own["changes"], f"{_name(path)} on {entry['version']}"
