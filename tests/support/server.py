"""Run the real service under gunicorn for tests that need a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from screening import PROJECT_ROOT
from tests.support.app import API_KEYS
from tests.support.app import bearer
from tests.support.markers import require


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_environment(database_url: str) -> dict[str, str]:
    """The environment of a served app on ``database_url``: the test keys, no rate limit."""
    return {
        "SCREENING_DATABASE_URL": database_url,
        "SCREENING_API_KEYS": API_KEYS,
        "SCREENING_RATE_LIMIT": "",
    }


@contextmanager
def gunicorn(
    env: dict[str, str],
    log: Path,
    *,
    workers: int = 3,
    threads: int = 4,
    port: int | None = None,
) -> Iterator[str]:
    """Start ``gunicorn 'screening:create_app()'`` (on ``port``, else a free one); yield its
    base URL; stop it."""
    require("deployment", "gunicorn")
    port = port or free_port()
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "screening:create_app()",
    ]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=environment, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited: {log.read_text(errors='replace')}")
                try:
                    if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start within 30 s")
                time.sleep(0.1)
            yield base
        finally:
            _stop(process, 15)


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``process``; SIGKILL it if it has not exited within ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return stat.rsplit(")", 1)[1].split()


def child_pids(pid: int) -> list[int]:
    """The live (not zombie) child processes of ``pid``, oldest first, from Linux ``/proc``.

    The kernel's ``/proc/<pid>/task/<tid>/children`` is not always built in, so this
    reads every process's parent instead.
    """
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # After the name: [0] state (Z: exited, not yet reaped), [1] parent pid and
        # [19] start time in clock ticks since boot (fields 3, 4 and 22 of proc(5)).
        if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
            children.append((int(fields[19]), int(entry.name)))
    return [child for _, child in sorted(children)]


def running(pid: int) -> bool:
    """Whether a thread of process ``pid`` is running or ready to run (state R) right now.

    For a gunicorn worker, that is most likely a request being processed: idle threads
    sleep in poll() or on a lock.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        if stat.rsplit(")", 1)[1].split()[0] == "R":
            return True
    return False


def _listening_inode(port: int) -> str:
    """The socket inode of the IPv4 TCP listener on ``port``, from ``/proc/net/tcp``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
            return fields[9]
    raise LookupError(f"nothing listens on port {port}")


def master_pid(base: str) -> int:
    """The pid of the gunicorn master that ``gunicorn()`` started for ``base``.

    The master is the child of this process that holds the listening socket; its workers
    hold it too, but are the master's children. Matching the socket, not the command line,
    still works when gunicorn retitles its processes (setproctitle).
    """
    port = urlsplit(base).port
    assert port is not None, base
    socket_link = f"socket:[{_listening_inode(port)}]"
    for pid in child_pids(os.getpid()):
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) == socket_link:
                    return pid
            except OSError:
                continue  # closed meanwhile
    raise LookupError(f"no gunicorn master of ours listens on {base}")


def race_posts(
    posts: Sequence[tuple[str, dict[str, Any], str]], who: str = "portal-a", timeout: float = 30
) -> list[requests.Response]:
    """POST each ``(base URL, body, Idempotency-Key)`` to /v1/screenings at the same moment.

    Each request has its own thread and connection, and all wait on one barrier, so they
    reach the server(s) together; the responses come back in the order of ``posts``.
    """
    barrier = threading.Barrier(len(posts))

    def send(post: tuple[str, dict[str, Any], str]) -> requests.Response:
        base, body, key = post
        with requests.Session() as session:
            barrier.wait()
            return session.post(
                f"{base}/v1/screenings",
                json=body,
                headers={**bearer(who), "Idempotency-Key": key},
                timeout=timeout,
            )

    with ThreadPoolExecutor(len(posts)) as pool:
        return list(pool.map(send, posts))


@contextmanager
def webhook_worker(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``flask --app screening webhooks run ARGS`` until the block ends (then SIGTERM)."""
    require("deployment", "The webhook worker")
    command = [
        str(Path(sys.executable).parent / "flask"),
        "--app",
        "screening",
        "webhooks",
        "run",
        *args,
    ]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env=environment, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        _stop(process, 20)
