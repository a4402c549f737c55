"""The webhooks guide's receiver example really works: run it as written, send it real deliveries.

The Python block under "Verifying a signature" is saved as ``receiver.py`` and served with
``flask --app receiver run``, as docs/webhooks.md says; the service's delivery worker sends it
signed events; a forged request is refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from screening import PROJECT_ROOT
from screening import extension
from tests.support.app import app_store
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.receiver import new_secret
from tests.support.server import free_port


def _guide_receiver() -> str:
    """The Python code block of the "Verifying a signature" section of docs/webhooks.md."""
    guide = (PROJECT_ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    section = guide.split("\n## Verifying a signature\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the section has no Python example"
    return match.group(1)


@pytest.fixture
def running_example(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """The guide's receiver under ``flask run``; (its URL, its secret, its output file)."""
    (tmp_path / "receiver.py").write_text(_guide_receiver(), encoding="utf-8")
    secret = new_secret()
    port = free_port()
    output = tmp_path / "receiver.out"
    flask = Path(sys.executable).parent / "flask"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [str(flask), "--app", "receiver", "run", "--port", str(port)],
            cwd=tmp_path,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WEBHOOK_SECRET": secret},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/hooks/screening"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None, output.read_text()
                assert time.monotonic() < deadline, "the example did not start"
                time.sleep(0.1)
        yield url, secret, output
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_guide_receiver_verifies_real_deliveries_and_refuses_forgeries(
    database_url: str, running_example: tuple[str, str, Path], valid_answers: dict[str, Any]
) -> None:
    url, secret, output = running_example
    endpoints = [{"name": "example", "url": url, "secret": secret, "events": ["screening.created"]}]
    with make_app(
        database_url, WEBHOOKS=json.dumps(endpoints), PUBLIC_URL="https://screening.example.org"
    ) as app:
        created = app.test_client().post(
            "/v1/screenings",
            json={"answers": {**valid_answers, "rf_fever": True}},
            headers=bearer("portal-a"),
        )
        assert created.status_code == 201
        screening_id = created.get_json()["id"]
        with app.app_context():
            deliverer = extension.notifications().deliverer()
        with requests.Session() as session:
            assert deliverer.deliver_due(session) == 1
        with app_store(app).engine.connect() as conn:
            row = conn.execute(sa.text("SELECT status, last_result FROM webhook_deliveries")).one()
    assert tuple(row) == ("delivered", "HTTP 204")

    forged = requests.post(
        url,
        data=b'{"type": "screening.created"}',
        headers={
            "webhook-id": "msg_forged",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
        },
        timeout=5,
    )
    assert forged.status_code == 400
    time.sleep(0.3)
    printed = output.read_text()
    assert (
        f"screening.created {screening_id} urgent_care "
        f"https://screening.example.org/review/{screening_id}"
    ) in printed
    assert printed.count("screening.created") == 1
