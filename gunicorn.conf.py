"""Gunicorn's production configuration for ``gunicorn 'screening:create_app()'``.

Gunicorn reads this file by itself when started from the repository root (it looks for
``./gunicorn.conf.py``); the container passes it with ``--config``. Every value can be changed
through the environment, so one image serves every deployment:

- ``GUNICORN_BIND``: ``host:port`` (several separated by commas). Otherwise ``0.0.0.0:$PORT``
  when ``PORT`` is set (the platform convention gunicorn follows itself), else gunicorn's own
  ``127.0.0.1:8000``. The image sets ``GUNICORN_BIND=0.0.0.0:8000``.
- ``WEB_CONCURRENCY``: worker processes; default ``2 * cores + 1``, at most 9.
- ``GUNICORN_THREADS``: threads per worker (gthread worker); default 4.
- ``GUNICORN_TIMEOUT``, ``GUNICORN_GRACEFUL_TIMEOUT``, ``GUNICORN_KEEPALIVE``: seconds.
- ``GUNICORN_MAX_REQUESTS``, ``GUNICORN_MAX_REQUESTS_JITTER``: recycle a worker after this many
  requests, plus a random 0..jitter, so the workers don't all restart at once.
- ``FORWARDED_ALLOW_IPS``: the proxies trusted to set ``X-Forwarded-Proto``; comma-separated
  addresses, ``*`` for any. Gunicorn's default trusts only the loopback. The client's address
  (for rate limits) is read by the app itself through ``SCREENING_TRUSTED_PROXIES``.
- ``GUNICORN_LOG_LEVEL``: ``debug``, ``info`` (default), ``warning``, ``error``, ``critical``.
- ``GUNICORN_ACCESS_LOG=on``: gunicorn's own access log too (off by default: the app logs
  each request itself, as JSON, without paths).
- ``PROMETHEUS_MULTIPROC_DIR``: a folder where workers share metrics (emptied at start).

Slow clients: the sync and gthread workers give a connection a thread for as long as the
client takes to send its request and read the response, so a few slow or idle clients can tie
them all up. Run gunicorn behind a buffering reverse proxy (nginx, a cloud load balancer) that
receives whole requests before passing them on and takes the responses at once; ``timeout``
then only has to cover the slowest request the service itself handles. Where the proxy keeps
connections to gunicorn open between requests, set ``GUNICORN_KEEPALIVE`` above the proxy's
idle timeout for them, so the proxy is the one that closes: a proxy reusing a connection that
gunicorn has just closed answers its client with a 502.
"""

from __future__ import annotations

import os
from typing import Any


def _env_int(name: str, default: int) -> int:
    """The integer in environment variable ``name``, or ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {value!r}") from None


def _cores() -> int:
    """CPU cores this process may run on (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0))


def _bind() -> list[str]:
    """The addresses to listen on, from ``GUNICORN_BIND`` or ``PORT``."""
    if os.environ.get("GUNICORN_BIND", "").strip():
        return [part.strip() for part in os.environ["GUNICORN_BIND"].split(",") if part.strip()]
    if os.environ.get("PORT", "").strip():
        return [f"0.0.0.0:{os.environ['PORT'].strip()}"]
    return ["127.0.0.1:8000"]


bind = _bind()

# Workers are processes: more of them use more memory (each loads the rules and opens its own
# database pool) but survive a stuck request. The usual 2 * cores + 1, capped so a big host
# doesn't open dozens of database connections per container.
workers = _env_int("WEB_CONCURRENCY", min(2 * _cores() + 1, 9))
# Threads overlap the waits on the database inside one worker.
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)

# A worker silent for this long is killed and replaced; the slowest request must fit within it.
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# On SIGTERM (docker stop), workers get this long to finish their requests. Keep it below the
# orchestrator's own grace period (Docker's default is 10 s: `docker stop -t`, `stop_grace_period`).
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 8)
# Seconds an idle keep-alive connection stays open (see the module docstring on proxies).
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)

# Recycle each worker now and then, so a slow leak never grows without bound.
# A worker takes about a second of CPU to start (imports, rules and their schemas): recycle
# rarely enough that restarts stay a small share of the work under load. At 10,000 they
# did not: a /healthz costs about 0.23 ms of CPU, so a restart every 10,000 of them added
# about 40% (a bare Flask worker starts in 0.15 s, 7%), and while a worker restarted the
# requests on its connections waited (a p99 of 0.3-1 s in those rounds). At 100,000 a
# restart is at most 4% of a worker's /healthz work, well under 1% of its POST work.
# The jitter is half the limit: workers started together and serving alike would otherwise
# all restart within a second or two of each other, and while each new worker loads (about
# 0.5 s of CPU, seconds on a busy host) the others carry everything; at 10% jitter that showed
# as a 1.4 s p99 under load.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 100000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", max_requests // 2)

# The worker heartbeat file lives in memory: on a container's overlay file system the
# heartbeat writes can stall and get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Logs are JSON lines. The app writes one per request to stdout (route template, status,
# duration, key name, request id), so gunicorn's own access log is off by default: it would
# repeat each request with its raw path, and a path is whatever the client typed, patient data
# included. GUNICORN_ACCESS_LOG=on turns it on (path without query string) for debugging.
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG") == "on" else None
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Gunicorn's own messages (boot, worker exits, errors) as JSON lines on stderr, like the app's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        # With a logging dict gunicorn logs access through this logger whatever `accesslog`
        # says: no handler unless GUNICORN_ACCESS_LOG=on.
        "gunicorn.access": {
            "level": "INFO",
            "handlers": ["console"] if accesslog else [],
            "propagate": False,
        },
    },
}

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Gunicorn 25.1+ opens a control socket under $HOME for runtime management (gunicornc). The
# service doesn't use it, and in the image $HOME isn't writable; unknown to older gunicorns,
# which ignore this setting.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Say at start-up that CDS cards carry no links without SCREENING_PUBLIC_URL (they are
    never built from the Host a caller sent); start Prometheus's multiprocess folder empty,
    when used: old files would add up."""
    if not os.environ.get("SCREENING_PUBLIC_URL"):
        server.log.warning(
            "SCREENING_PUBLIC_URL is not set: CDS cards carry no links to the review pages"
        )
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from Prometheus's multiprocess files, when used."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
