"""The webhook use cases for commands and metrics: run a worker, list and retry deliveries,
and the outbox's gauges."""

from __future__ import annotations

import logging
from datetime import UTC
from datetime import datetime
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError

from screening.records import DeliveryState
from screening.services.delivery import DEFAULT_LEASE_SECONDS
from screening.services.delivery import Deliverer
from screening.services.triage import ReviewClock
from screening.services.webhooks import Endpoint
from screening.services.webhooks import Notifier
from screening.storage.outbox import Outbox
from screening.storage.store import Store

logger = logging.getLogger(__name__)


class NotificationService:
    """Webhook deliveries and overdue reviews over one store."""

    def __init__(self, store: Store, notifier: Notifier, clock: ReviewClock) -> None:
        self.outbox = Outbox(store)
        self.notifier = notifier
        self.clock = clock

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The configured endpoints."""
        return self.notifier.endpoints

    def deliverer(self, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> Deliverer:
        """A delivery worker for the configured endpoints."""
        return Deliverer(
            self.outbox, self.endpoints, self.notifier, self.clock, lease_seconds=lease_seconds
        )

    def deliveries(self, *, failed_only: bool = False, limit: int = 50) -> list[DeliveryState]:
        """Deliveries newest first, without their payloads."""
        return self.outbox.list(failed_only=failed_only, limit=limit)

    def retry(self, delivery_id: int) -> Literal["retried", "missing", "not_failed"]:
        """Send a failed delivery again, on a fresh retry schedule."""
        return self.outbox.retry(delivery_id, datetime.now(UTC))

    def gauges(self) -> tuple[int, float, int] | None:
        """Overdue reviews now, the oldest pending delivery's age in seconds and the failed
        deliveries; None when the database does not answer (the reason goes to the log)."""
        now = datetime.now(UTC)
        try:
            overdue = self.outbox.count_overdue(self.clock.urgent, self.clock.cutoff(now))
            oldest, failed = self.outbox.queue_stats()
        except SQLAlchemyError:
            logger.warning("metrics: the database did not answer", exc_info=True)
            return None
        age = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
        return overdue, age, failed
