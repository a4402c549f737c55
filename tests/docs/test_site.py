"""The documentation site builds in strict mode, fails on a broken link, and the README leads
to every guide in one click."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from screening import PROJECT_ROOT
from tests.support.docs import build_site
from tests.support.docs import nav_pages
from tests.support.docs import page_url

README = PROJECT_ROOT / "README.md"
CONFIG = PROJECT_ROOT / "mkdocs.yml"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `mkdocs build --strict` makes it from the repository."""
    folder = tmp_path_factory.mktemp("site")
    done = build_site(PROJECT_ROOT, folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


def test_the_site_builds_strictly_with_every_page_of_the_nav(site: Path) -> None:
    pages = nav_pages()
    for page in pages:
        assert (site / page_url(page) / "index.html").exists(), page
    # Every Markdown file in docs/ is a page of the nav (strict mode refuses one left out).
    docs = PROJECT_ROOT / "docs"
    written = {str(path.relative_to(docs)) for path in docs.rglob("*.md")}
    assert written == set(pages)


def test_the_reference_page_is_the_contract_with_local_assets(site: Path) -> None:
    assert (site / "openapi.yaml").read_bytes() == (PROJECT_ROOT / "openapi.yaml").read_bytes()
    page = (site / "reference" / "index.html").read_text(encoding="utf-8")
    frame = re.search(
        r'<iframe[^>]*class="swagger-ui-iframe"[^>]*src="([^"]+)"', page
    ) or re.search(r'<iframe[^>]*src="([^"]+)"[^>]*class="swagger-ui-iframe"', page)
    assert frame is not None
    inner = (site / "reference" / frame[1]).read_text(encoding="utf-8")
    assert "openapi.yaml" in inner
    assert (site / "assets" / "javascripts" / "swagger-ui-bundle.js").exists()


def test_no_page_loads_anything_from_another_host(site: Path) -> None:
    """Scripts, styles, fonts, frames and images come from the site itself (no CDN)."""
    pattern = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(https?:)?//', re.I)
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        # <link rel=...> to another host is fine only when it loads nothing (none here).
        assert pattern.search(text) is None, page.relative_to(site)
    for sheet in site.rglob("*.css"):
        assert "@import url(http" not in sheet.read_text(encoding="utf-8"), sheet


# --- a broken link fails the build ------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        # A link to a page that does not exist.
        (("portal.md", "\nSee [the old guide](old-guide.md).\n"), "old-guide.md"),
        # A link to a heading that does not exist on a page that does.
        (("portal.md", "\nSee [CDS cards](ehr.md#no-such-heading).\n"), "no-such-heading"),
        # A picture that is not there.
        (("clinicians.md", "\n![The list](screenshots/gone.png)\n"), "screenshots/gone.png"),
        # A page that nothing in the nav leads to.
        (("orphan.md", "# Orphan\n"), "orphan.md"),
    ],
    ids=["missing page", "missing anchor", "missing picture", "page left out of the nav"],
)
def test_a_broken_link_fails_the_build(tmp_path: Path, change: tuple[str, str], named: str) -> None:
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copytree(PROJECT_ROOT / "docs", copy / "docs")
    shutil.copy(CONFIG, copy / "mkdocs.yml")
    shutil.copy(PROJECT_ROOT / "openapi.yaml", copy / "openapi.yaml")
    (copy / "tools").mkdir()
    shutil.copy(PROJECT_ROOT / "tools" / "docs_hooks.py", copy / "tools" / "docs_hooks.py")
    # The copy as it is builds: only the change breaks it.
    assert build_site(copy, tmp_path / "before").returncode == 0
    name, text = change
    page = copy / "docs" / name
    page.write_text(
        (page.read_text(encoding="utf-8") if page.exists() else "") + text, encoding="utf-8"
    )
    done = build_site(copy, tmp_path / "after")
    assert done.returncode != 0
    assert named in done.stdout + done.stderr


# --- the README -------------------------------------------------------------------------------


def _readme_links() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    for link in _readme_links():
        if re.match(r"[a-z]+:", link):
            continue
        path = link.split("#", 1)[0]
        assert (PROJECT_ROOT / path).is_file(), link


def test_every_guide_is_one_click_from_the_readme() -> None:
    linked = {link.split("#", 1)[0] for link in _readme_links()}
    # The guides: every page of the nav but the home page, the API reference (a built page,
    # reached from the portal guide) and the pages inside a guide's section.
    guides = [
        page
        for page in nav_pages()
        if page not in {"index.md", "reference.md"}
        and ("/" not in page or page.endswith("/index.md"))
    ]
    assert guides, "the nav lists no guides"
    for guide in guides:
        assert f"docs/{guide}" in linked, guide


def test_make_docs_serves_the_site() -> None:
    """`make docs` is the command the README and the guide give for the site."""
    done = subprocess.run(
        ["make", "--dry-run", "docs"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "mkdocs serve" in done.stdout and "8001" in done.stdout


def test_the_readme_walkthrough_quotes_the_release_record() -> None:
    """clinical-safety-v1.md: README "Changing the rules" shows one package's diff and replay;
    what it quotes is what the commands printed for lumbar-rfa 1.1.1."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Changing the rules\n", 1)[1].split("\n## ", 1)[0]
    record = PROJECT_ROOT / "docs" / "clinical-safety" / "releases" / "2026-12-07-safety-update"
    replay = (record / "3-replay-1.1.1.txt").read_text(encoding="utf-8")
    pairs = (record / "3-pairs-1.1.1.txt").read_text(encoding="utf-8")
    diff = (record / "2-diff-1.1.1.txt").read_text(encoding="utf-8")
    assert "1127 screenings replayed, 133 would change" in section
    assert "1127 screenings replayed, 133 would change" in replay
    assert re.search(r"^\s+44\s+major_trauma -> earlier_major_trauma$", pairs, re.M)
    assert "44 major_trauma -> earlier_major_trauma" in section
    assert re.search(r"^\s+added\s+earlier_major_trauma$", diff, re.M)
    assert re.search(r"^\s+changed\s+major_trauma condition", diff, re.M)
    # And the README says who approves, as the contract asks of its "Clinical safety".
    safety = text.split("\n## Clinical safety\n", 1)[1].split("\n## ", 1)[0]
    assert "hazard log" in safety and "approves" in safety
