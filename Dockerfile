# The screening service: gunicorn serving screening:create_app() on port 8000.
#
#   docker build -t spine-screening .
#   docker run --env-file .env -p 8000:8000 spine-screening
#
# Configuration comes from SCREENING_* variables at run time (docs/operators.md), never from the image.
# The entrypoint applies the database migrations, then runs gunicorn with gunicorn.conf.py.
# compose.yaml runs it with PostgreSQL.

# Any Debian-like image with python3 >= 3.11 and its venv module. By default the official slim
# image (pin its digest as well where the registry is reachable: FROM python:X@sha256:...);
# where no image can be pulled, tools/make_base_image.sh makes a local Debian one to pass here.
ARG BASE_IMAGE=python:3.11.17-slim-bookworm
FROM ${BASE_IMAGE}

# The venv at /opt/venv works alike on the official image (python in /usr/local) and on Debian's
# python3 (in /usr), and keeps the service's packages apart from the system's.
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The service runs as this user, with a fixed id so orchestrators can check it isn't root.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies before the code, from the lock alone: a change to the code reuses this layer,
# only a change to requirements/runtime.txt installs them again. It holds the service's own
# dependencies (none of the test or development tools), each at one version with its hashes:
# pip refuses anything that does not match (`make lock` writes the file).
COPY requirements/runtime.txt /tmp/requirements.txt
# A package index to install from instead of PyPI (a mirror): --build-arg PIP_INDEX_URL=...
# The hashes still have to match.
ARG PIP_INDEX_URL=https://pypi.org/simple
RUN pip install --no-cache-dir --require-hashes --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code is not pip-installed: it stays at /app/screening, so the package finds rules/ and
# openapi.yaml beside itself (/app/rules, /app/openapi.yaml: its PROJECT_ROOT is /app) and the
# default SQLite database lands in /app/instance, the one folder the service may write.
# PYTHONPATH makes `import screening` work from any working directory. Root owns the code, so
# the service can't change it; Python files are compiled here for the same reason.
# PROMETHEUS_MULTIPROC_DIR lets /metrics add up every worker's counts (emptied at start).
ENV PYTHONPATH=/app \
    GUNICORN_BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
COPY screening/ screening/
COPY rules/ rules/
COPY openapi.yaml gunicorn.conf.py docker-entrypoint.sh ./
RUN python -m compileall -q screening \
    && mkdir instance \
    && chown app:app instance

USER 10001:10001
EXPOSE 8000

# /healthz answers while the process serves. Python's urllib, as the image has no curl; the port
# is GUNICORN_BIND's (one host:port).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('GUNICORN_BIND', ':8000').split(',')[0].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["/app/docker-entrypoint.sh"]
CMD ["gunicorn", "--config", "/app/gunicorn.conf.py", "screening:create_app()"]
