#!/bin/sh
# The image's entrypoint: apply the database migrations, then become the server.
#
# Migrations run only when the command is gunicorn (the default), so a one-off command such as
# `docker run IMAGE flask --app screening rules check` starts without touching the database.
# The upgrade does nothing once the database is at the newest revision. Replicas starting at
# once on a new database may race; the loser exits non-zero, and on its restart finds the
# schema in place.
set -eu

# Prometheus's multiprocess folder (the image sets it, under /tmp: an empty tmpfs in compose).
# gunicorn makes it itself; any other process counting metrics, such as the webhook delivery
# worker, would fail at its first count without it.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

if [ "${1:-}" = "gunicorn" ]; then
    flask --app screening db upgrade
fi

# exec: the command replaces this shell as PID 1, so docker stop's SIGTERM reaches gunicorn.
exec "$@"
