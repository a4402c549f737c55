"""The body limit on every transfer, and a 413 the client gets to read.

Werkzeug refuses a ``Content-Length`` over ``MAX_CONTENT_LENGTH``, but a body
sent with ``Transfer-Encoding: chunked`` (or over HTTP/2, without a length) is
only cut off at the limit when read, and what came before the cut was used as
the whole body. ``BodyLimit`` reads such a body up front, at most one byte past
the limit, so every request is measured before the app looks at it: one within
the limit goes on as an ordinary body with a length, one past it is refused with
the same 413 problem as an oversized ``Content-Length``, on every route.

A client that is still sending its body when the 413 is written would otherwise
see its connection reset (the server closes with unread data, and the kernel
answers with RST) and lose the response. So after answering 413 the rest of the
body is read and thrown away, at most ``DRAIN_BYTES`` within ``DRAIN_SECONDS``,
as nginx's lingering close does; a client sending more than that is cut off.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterable
from typing import IO
from typing import TYPE_CHECKING
from typing import Any

from flask import Flask
from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import ClosingIterator
from werkzeug.wsgi import get_content_length

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

#: The environ key that marks a request whose body is over the limit.
TOO_LARGE = "screening.body_too_large"
#: At most this much of a refused body is read after the 413, and for at most this long.
DRAIN_BYTES = 1024 * 1024
DRAIN_SECONDS = 5.0
_CHUNK = 16 * 1024


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``: fewer only when the body ends first."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _drain(stream: IO[bytes], budget: int, sock: Any) -> None:
    """Read and discard up to ``budget`` bytes of a refused body, for ``DRAIN_SECONDS`` at most.

    ``sock`` is the connection (gunicorn passes it as ``gunicorn.socket``): its timeout
    bounds each wait for a client that stops sending without closing.
    """
    timed = isinstance(sock, socket.socket)
    prior = sock.gettimeout() if timed else None
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while budget > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if timed:
                sock.settimeout(remaining)
            chunk = stream.read(min(budget, _CHUNK))
            if not chunk:
                return
            budget -= len(chunk)
    except (OSError, ValueError):
        # Timed out, or the client went away: nothing more to wait for.
        return
    finally:
        if timed:
            try:
                sock.settimeout(prior)
            except OSError:
                pass


class BodyLimit:
    """WSGI middleware: measure every request body against ``limit`` before the app runs."""

    def __init__(self, app: WSGIApplication, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Buffer a body of unknown length, mark an oversized one, drain it after the 413."""
        stream: IO[bytes] = environ["wsgi.input"]
        length = get_content_length(environ)
        drain = 0
        if length is None and "wsgi.input_terminated" in environ:
            # The server ends the stream at the end of the body (chunked or HTTP/2).
            body = _read_up_to(stream, self.limit + 1)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            if len(body) > self.limit:
                environ[TOO_LARGE] = True
                environ["wsgi.input"] = io.BytesIO()
                # Werkzeug refuses this length too, should anything read the body.
                environ["CONTENT_LENGTH"] = str(self.limit + 1)
                drain = DRAIN_BYTES
            else:
                environ["wsgi.input"] = io.BytesIO(body)
                if body:
                    environ["CONTENT_LENGTH"] = str(len(body))
        elif length is not None and length > self.limit:
            environ[TOO_LARGE] = True
            # Never past the stated length: beyond it may come the next request, or a
            # server that does not end the stream would block.
            drain = min(length, DRAIN_BYTES)
        response = self.app(environ, start_response)
        if not drain:
            return response
        sock = environ.get("gunicorn.socket")
        # After the response is written (a WSGI server calls close() then), before the
        # server closes the connection.
        return ClosingIterator(response, [lambda: _drain(stream, drain, sock)])


def _refuse_oversized() -> None:
    """413 for a request whose body is over the limit, on every route alike."""
    if request.environ.get(TOO_LARGE):
        raise RequestEntityTooLarge()


def init_app(app: Flask) -> None:
    """Limit every request body to ``MAX_CONTENT_LENGTH`` bytes, however it is sent.

    Call it before the rate limiter is installed: an oversized request is refused
    before it counts against a budget.
    """
    app.wsgi_app = BodyLimit(app.wsgi_app, int(app.config["MAX_CONTENT_LENGTH"]))  # type: ignore[method-assign]
    app.before_request(_refuse_oversized)
