"""What the services count for Prometheus (the HTTP metrics live in ``screening.web``)."""

from __future__ import annotations

from prometheus_client import Counter

# Module level: Prometheus metrics are process-wide, whatever number of apps.
OUTCOMES = Counter("screening_outcomes_total", "Stored screenings by outcome code.", ["outcome"])


def record_outcome(outcome: str) -> None:
    """Count one stored screening by its outcome."""
    OUTCOMES.labels(outcome).inc()
