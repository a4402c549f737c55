"""A real webhook receiver for tests: a small threaded HTTP server on the loopback interface.

It records every POST (headers, body, when), answers with the status the test chose after
an optional delay, can be stopped and started again on the same port (a receiver that is
down, then up), and notices when two requests with the same ``webhook-id`` are being
handled at the same moment (a concurrent double send).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.support.server import free_port
from tests.support.serving import start_serving


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    #: time.monotonic() when it arrived.
    at: float
    status: int

    @property
    def event(self) -> dict[str, Any]:
        """The body as JSON."""
        return dict(json.loads(self.body))

    @property
    def webhook_id(self) -> str:
        """The Standard Webhooks message id."""
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict[str, Any]:
        """The event, after ``standardwebhooks`` checked its signature with ``secret``."""
        return dict(Webhook(secret).verify(self.body, self.headers))


class Receiver:
    """Records webhook deliveries on ``http://127.0.0.1:<port>/<path>``."""

    def __init__(self) -> None:
        self.port = free_port()
        #: The status to answer with, and how long to wait first; a function of the
        #: request may decide instead (see ``answer_with``).
        self.status = 204
        self.delay = 0.0
        self._decide: Callable[[str, dict[str, str]], tuple[int, float]] | None = None
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self.overlaps: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "hook") -> str:
        """The address of one endpoint on this receiver."""
        return f"http://127.0.0.1:{self.port}/{path}"

    def answer_with(self, decide: Callable[[str, dict[str, str]], tuple[int, float]]) -> None:
        """Let ``decide(path, headers)`` choose each answer's (status, delay)."""
        self._decide = decide

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                """Record the request, wait if asked, answer."""
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path.lstrip("/")
                if receiver._decide is not None:
                    status, delay = receiver._decide(path, headers)
                else:
                    status, delay = receiver.status, receiver.delay
                key = (path, headers.get("webhook-id", ""))
                with receiver._lock:
                    receiver._in_flight[key] += 1
                    if receiver._in_flight[key] > 1:
                        receiver.overlaps.append(key[1])
                    receiver._received.append(
                        Received(path, headers, body, time.monotonic(), status)
                    )
                try:
                    if delay:
                        time.sleep(delay)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    with receiver._lock:
                        receiver._in_flight[key] -= 1

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads ``received`` instead."""

        return Handler

    def start(self) -> Receiver:
        """Listen (again) on this receiver's port."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = start_serving(server)
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start`` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self, path: str | None = None) -> list[Received]:
        """Every request so far (to one endpoint's path, if given), in arrival order."""
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def wait_for(
        self, done: Callable[[list[Received]], bool], timeout: float, path: str | None = None
    ) -> list[Received]:
        """Wait until ``done(received)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received(path)
            if done(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {len(got)}: {[r.path for r in got]}")
            time.sleep(0.05)
