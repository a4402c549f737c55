"""What the services count for Prometheus (the HTTP metrics live in ``screening.web``)."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Module level: Prometheus metrics are process-wide, whatever number of apps.
OUTCOMES = Counter("screening_outcomes_total", "Stored screenings by outcome code.", ["outcome"])
SHADOW_DISAGREEMENTS = Counter(
    "screening_shadow_disagreements_total",
    "Stored screenings whose shadow ruleset (by id and version) gave another outcome.",
    ["ruleset", "version"],
)
DELIVERIES = Counter(
    "screening_webhook_deliveries_total",
    "Webhook delivery attempts by endpoint and result: delivered (a 2xx), retry (failed, "
    "tried again later) or failed (failed, and the delivery is given up).",
    ["endpoint", "result"],
)

OVERDUE_SCANS = Counter(
    "screening_webhook_overdue_scans_total",
    "Scans for urgent screenings whose review became overdue that the webhook worker "
    "completed (one every few seconds while it runs; alert if it stops rising).",
)


def record_outcome(outcome: str) -> None:
    """Count one stored screening by its outcome."""
    OUTCOMES.labels(outcome).inc()


def record_shadow_disagreement(ruleset: str, version: str) -> None:
    """Count one stored screening whose shadow ruleset gave another outcome."""
    SHADOW_DISAGREEMENTS.labels(ruleset, version).inc()


def record_delivery(endpoint: str, result: str) -> None:
    """Count one webhook delivery attempt."""
    DELIVERIES.labels(endpoint, result).inc()


def record_overdue_scan() -> None:
    """Count one completed scan for overdue reviews."""
    OVERDUE_SCANS.inc()


class DatabaseGauges(Collector):
    """Gauges read from the database at each scrape, so every instance reports the same.

    ``read`` returns (overdue reviews, age in seconds of the oldest pending webhook
    delivery, failed webhook deliveries).
    """

    def __init__(self, read: Callable[[], tuple[int, float, int] | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        """The gauges, as of now; none while the database does not answer."""
        values = self._read()
        if values is None:
            return
        overdue, oldest_age, failed = values
        yield GaugeMetricFamily(
            "screening_overdue_reviews",
            "Urgent screenings still pending after SCREENING_URGENT_REVIEW_MINUTES.",
            value=overdue,
        )
        yield GaugeMetricFamily(
            "screening_webhook_oldest_pending_age_seconds",
            "Age of the oldest webhook event not yet delivered (0 when none waits).",
            value=oldest_age,
        )
        yield GaugeMetricFamily(
            "screening_webhook_failed_deliveries",
            "Webhook deliveries given up after their retries (see `webhooks list --failed`).",
            value=failed,
        )
