"""Build the documentation site as `make test` and `make docs` do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from screening import PROJECT_ROOT


def build_site(project: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of ``project``'s mkdocs.yml into ``site_dir``."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=project,
        # Material's notice about its own end of life is not the build's concern here.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def nav_pages() -> list[str]:
    """Every page the nav of mkdocs.yml names, in its order."""
    # mkdocs.yml has no custom YAML tags, so the safe loader reads it.
    config = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages: list[str] = []

    def walk(entries: list[object]) -> None:
        for entry in entries:
            if isinstance(entry, str):
                pages.append(entry)
            elif isinstance(entry, dict):
                for value in entry.values():
                    walk(value if isinstance(value, list) else [value])

    walk(config["nav"])
    return pages


def page_url(page: str) -> str:
    """The path a page of the nav is served at (`use_directory_urls`): `ehr.md` at `ehr/`."""
    source = Path(page)
    folder = source.parent if source.stem in {"index", "README"} else source.with_suffix("")
    return "" if str(folder) == "." else f"{folder}/"
