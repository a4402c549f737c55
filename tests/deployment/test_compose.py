"""compose.yaml: the service and its webhook delivery worker run from one image with one
environment, both hardened alike, the worker started after the app has migrated the database.

Read as YAML (anchors and merge keys resolved as compose resolves them), so it runs without
a Docker engine; ``docker compose config`` (or docker-compose) checks the file too where one
is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from screening import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "compose.yaml"
WORKER_COMMAND = [
    *["flask", "--app", "screening", "webhooks", "run"],
    *["--metrics-port", "9101", "--metrics-host", "0.0.0.0"],
]
#: What the worker needs to send what the app writes: the same values on both.
WEBHOOK_SETTINGS = (
    "SCREENING_DATABASE_URL",
    "SCREENING_WEBHOOKS",
    "SCREENING_PUBLIC_URL",
    "SCREENING_URGENT_REVIEW_MINUTES",
)
#: Kept alike on the app and the worker.
HARDENING = ("image", "build", "read_only", "tmpfs", "cap_drop", "security_opt")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services of compose.yaml, anchors and merge keys resolved."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return dict(document["services"])


def test_the_worker_runs_the_delivery_command_from_the_apps_image(
    services: dict[str, Any],
) -> None:
    """The worker is the app's image (built alike) running ``flask webhooks run``."""
    app, worker = services["app"], services["worker"]
    assert worker["command"] == WORKER_COMMAND
    for key in HARDENING:
        assert worker[key] == app[key], key
    assert worker["read_only"] is True
    assert worker["cap_drop"] == ["ALL"]


def test_the_worker_shares_the_apps_environment(services: dict[str, Any]) -> None:
    """The same settings reach both (the app adds only gunicorn's), webhook ones included."""
    app_env, worker_env = services["app"]["environment"], services["worker"]["environment"]
    assert {k: v for k, v in app_env.items() if k in worker_env} == worker_env
    assert set(app_env) - set(worker_env) == {"FORWARDED_ALLOW_IPS"}
    for setting in WEBHOOK_SETTINGS:
        assert setting in worker_env, setting


def test_the_worker_starts_once_the_app_has_migrated(services: dict[str, Any]) -> None:
    """The app's entrypoint migrates before gunicorn serves /healthz: the worker waits for
    the app to be healthy (and for the database), and has no health check of the app's."""
    worker = services["worker"]
    assert worker["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "app": {"condition": "service_healthy"},
    }
    assert worker["healthcheck"] == {"disable": True}
    assert "ports" not in worker
    # Always on, restarted like the app (after a failure, and after a reboot).
    assert "profiles" not in worker
    assert worker["restart"] == services["app"]["restart"] == "unless-stopped"


def _compose() -> list[str] | None:
    """A compose command that answers, or None."""
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=60, check=False
        )
        if plugin.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def test_compose_accepts_the_file(tmp_path: Path) -> None:
    """``compose config`` resolves the file: both services get one environment."""
    compose = _compose()
    if compose is None:
        if os.environ.get("SCREENING_TEST_REQUIRE_DOCKER") == "1":
            pytest.fail("CI needs docker compose or docker-compose (.ci/run installs it)")
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    env_file = tmp_path / "test.env"
    endpoints = [
        {
            "name": "inbox",
            "url": "https://ehr.example.org/in",
            "secret": "whsec_x",
            "events": ["screening.created"],
        }
    ]
    env_file.write_text(
        "POSTGRES_PASSWORD=password1\n"
        "SCREENING_SECRET_KEY=secret\n"
        "SCREENING_API_KEYS=portal:portal:00\n"
        f"SCREENING_WEBHOOKS='{json.dumps(endpoints)}'\n"
        "SCREENING_PUBLIC_URL=https://screening.example.org\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [*compose, "--file", str(COMPOSE_FILE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    app_env, worker_env = resolved["app"]["environment"], resolved["worker"]["environment"]
    assert json.loads(worker_env["SCREENING_WEBHOOKS"]) == endpoints
    assert {k: v for k, v in app_env.items() if k in worker_env} == worker_env
