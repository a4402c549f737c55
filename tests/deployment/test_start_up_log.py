"""What gunicorn says at start-up about the service's settings."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.server import gunicorn
from tests.support.server import service_environment

LINKS_OFF = "SCREENING_PUBLIC_URL is not set: CDS cards carry no links to the review pages"


def test_start_up_says_when_cds_cards_carry_no_links(tmp_path: Path, sqlite_template: Path) -> None:
    database = tmp_path / "screening.db"
    shutil.copyfile(sqlite_template, database)
    env = service_environment(f"sqlite:///{database}")
    with gunicorn(env, tmp_path / "without.log", workers=1, threads=1):
        pass
    assert LINKS_OFF in (tmp_path / "without.log").read_text()
    with_url = {**env, "SCREENING_PUBLIC_URL": "https://screening.hospital.test"}
    with gunicorn(with_url, tmp_path / "with.log", workers=1, threads=1):
        pass
    assert LINKS_OFF not in (tmp_path / "with.log").read_text()
