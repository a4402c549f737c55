"""Serve a socketserver (an HTTP or WSGI server) on a thread for the length of a block."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def start_serving(server: socketserver.BaseServer) -> threading.Thread:
    """Serve ``server`` on a thread of its own (``server.shutdown()`` stops it)."""
    # A short poll: shutdown() waits for the loop to look (0.5 s a stop by default).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    return thread


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Serve ``server`` on a thread; stop and close it when the block ends."""
    thread = start_serving(server)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
