"""Who the client is behind reverse proxies: ``SCREENING_TRUSTED_PROXIES``.

The service runs behind a reverse proxy (docs/security.md), so the connection's
address is the proxy's. With ``SCREENING_TRUSTED_PROXIES=N`` the app takes the
client's address and scheme from the ``X-Forwarded-For`` and ``X-Forwarded-Proto``
entries the last N proxies added (werkzeug's ProxyFix), and ignores anything a
client wrote in front of those. 0, the default, trusts no header: for a service
reached directly.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask, count: int) -> None:
    """Read client addresses through ``count`` trusted proxies (``SCREENING_TRUSTED_PROXIES``)."""
    if count:
        # Only the address and scheme: the Host header reaches the app as the proxy
        # passed it (docs/security.md: the proxy must pass the original Host on).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)  # type: ignore[method-assign]
