"""The webhook delivery worker: ``flask --app screening webhooks run``.

Sender threads claim due outbox rows (with a lease), sign each body as Standard Webhooks
with the endpoint's secret and POST it. A 2xx answer within ``TIMEOUT_SECONDS`` is
success; anything else is retried on ``retry_delay``'s schedule until the first failed
attempt at least ``GIVE_UP_AFTER`` after the schedule began, which marks the delivery
failed. The main thread notices urgent screenings whose review became overdue and records
their ``screening.review_overdue`` event once.

Nothing here runs on the request path: requests only write outbox rows.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from screening.records import AttemptOutcome
from screening.records import EventFacts
from screening.records import NewDelivery
from screening.services.metrics import record_delivery
from screening.services.metrics import record_overdue_scan
from screening.services.triage import ReviewClock
from screening.services.webhooks import REVIEW_OVERDUE
from screening.services.webhooks import Endpoint
from screening.services.webhooks import Notifier
from screening.storage.outbox import OVERDUE_BATCH
from screening.storage.outbox import Claimed
from screening.storage.outbox import Outbox

if TYPE_CHECKING:
    # Imported where a delivery is sent, not here: every web worker and command imports
    # this module (the CLI's options), and requests took 60 ms of each start-up.
    import requests

logger = logging.getLogger(__name__)

#: A 2xx must come within this long (notifications-v1.md).
TIMEOUT_SECONDS = 10.0
#: A delivery is marked failed at its first failed attempt this long after its schedule began.
GIVE_UP_AFTER = timedelta(hours=24)
#: The waits after the first and second failed attempts: three attempts within a minute.
FIRST_RETRIES = (5.0, 30.0)
#: From the third failed attempt on, the wait doubles from a minute up to this cap.
BACKOFF_START = 60.0
BACKOFF_CAP = 6 * 3600.0
#: Each wait is multiplied by a random factor in this range, so that retries of many
#: deliveries that failed together (a receiver outage) spread out.
JITTER = (0.8, 1.2)
#: The shortest lease a worker may take: a whole attempt and a margin must fit in it.
MIN_LEASE_SECONDS = 15
DEFAULT_LEASE_SECONDS = 30
#: Time kept free at the end of a lease, for recording the result of its last attempt.
_LEASE_MARGIN_SECONDS = 2.0
#: Deliveries one sender claims at once.
BATCH = 5
USER_AGENT = "spine-screening-webhooks/1"
#: Read at most this much of a receiver's answer: only the status matters.
_MAX_ANSWER_BYTES = 64 * 1024


def retry_delay(failed_attempts: int, rng: random.Random) -> timedelta:
    """How long to wait after the ``failed_attempts``-th failed attempt of a schedule."""
    if failed_attempts <= len(FIRST_RETRIES):
        base = FIRST_RETRIES[max(failed_attempts, 1) - 1]
    else:
        base = min(BACKOFF_START * 2 ** (failed_attempts - len(FIRST_RETRIES) - 1), BACKOFF_CAP)
    return timedelta(seconds=base * rng.uniform(*JITTER))


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to."""

    ok: bool
    #: For the list and the log: "HTTP 200", "HTTP 503", "timeout", "connection error".
    result: str


#: How far before the last moment a scan covered the next one looks again: a screening
#: committed after that scan (a slow request, another server's clock) is still found.
OVERDUE_RESCAN = timedelta(minutes=10)


def _now() -> datetime:
    return datetime.now(UTC)


class Deliverer:
    """Claims, signs, sends and records deliveries; notices overdue reviews."""

    def __init__(
        self,
        outbox: Outbox,
        endpoints: tuple[Endpoint, ...],
        notifier: Notifier,
        clock: ReviewClock,
        *,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        if lease_seconds < MIN_LEASE_SECONDS:
            raise ValueError(f"a lease must be at least {MIN_LEASE_SECONDS} seconds")
        self.outbox = outbox
        self.endpoints: Mapping[str, Endpoint] = {e.name: e for e in endpoints}
        self.notifier = notifier
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self._rng = rng or random.SystemRandom()
        self._rng_lock = threading.Lock()
        #: Every urgent screening created up to this moment that became overdue has been
        #: noticed (None: nothing known yet, the next scan reads everything).
        self._overdue_covered: datetime | None = None

    # --- one attempt ------------------------------------------------------------------

    def post(self, session: requests.Session, delivery: Claimed) -> Attempt:
        """Sign and POST one delivery; never raises for what the receiver or network does."""
        import requests

        endpoint = self.endpoints[delivery.endpoint]
        moment = _now()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": endpoint.signer.sign(delivery.event_id, moment, delivery.payload),
        }
        started = time.monotonic()
        try:
            with session.post(
                endpoint.url,
                data=delivery.payload.encode(),
                headers=headers,
                timeout=(TIMEOUT_SECONDS, TIMEOUT_SECONDS),
                allow_redirects=False,
                stream=True,
            ) as answer:
                # Through iter_content, which turns what a broken or stalled body raises into
                # requests' errors (answer.raw would raise urllib3's own). One piece at most.
                for _piece in answer.iter_content(_MAX_ANSWER_BYTES):
                    break
                status = answer.status_code
        except requests.Timeout:
            return Attempt(False, "timeout")
        except requests.ConnectionError:
            return Attempt(False, "connection error")
        except requests.RequestException:
            return Attempt(False, "request error")
        # The timeout above bounds each wait for bytes; this bounds the whole answer.
        if time.monotonic() - started > TIMEOUT_SECONDS:
            return Attempt(False, "timeout")
        return Attempt(200 <= status < 300, f"HTTP {status}")

    def _outcome(self, delivery: Claimed, attempt: Attempt, now: datetime) -> AttemptOutcome:
        """The columns an attempt's result sets."""
        if attempt.ok:
            return {"status": "delivered", "delivered_at": now, "last_result": attempt.result}
        if now - delivery.scheduled_at >= GIVE_UP_AFTER:
            return {"status": "failed", "last_result": attempt.result}
        with self._rng_lock:
            wait = retry_delay(delivery.attempts, self._rng)
        return {"next_attempt_at": now + wait, "last_result": attempt.result}

    # --- a batch ----------------------------------------------------------------------

    def deliver_due(self, session: requests.Session, stop: threading.Event | None = None) -> int:
        """Claim up to ``BATCH`` due deliveries and attempt each; return how many were claimed."""
        names = list(self.endpoints)
        now = _now()
        if not names or not self.outbox.has_due(names, now):
            return 0
        token = secrets.token_hex(16)
        started = time.monotonic()
        claimed = self.outbox.claim(names, now, now + self.lease, token, BATCH)
        # Start an attempt only while a whole one still fits in the lease with a margin:
        # after it ends another worker may claim the row, and must not send it meanwhile.
        sendable = self.lease.total_seconds() - TIMEOUT_SECONDS - _LEASE_MARGIN_SECONDS
        for index, delivery in enumerate(claimed):
            late = index > 0 and time.monotonic() - started > sendable
            if late or (stop is not None and stop.is_set()):
                self.outbox.release([d.id for d in claimed[index:]], token, _now())
                break
            attempt = self.post(session, delivery)
            values = self._outcome(delivery, attempt, _now())
            recorded = self.outbox.record(delivery.id, token, values)
            result = {"delivered": "delivered", "failed": "failed"}.get(
                values.get("status", ""), "retry"
            )
            record_delivery(delivery.endpoint, result)
            logger.info(
                "webhook attempt",
                extra={
                    "delivery": delivery.id,
                    "event_id": delivery.event_id,
                    "event_type": delivery.event_type,
                    "endpoint": delivery.endpoint,
                    "attempt": delivery.attempts,
                    "result": attempt.result,
                    "outcome": result,
                    "recorded": recorded,
                },
            )
        return len(claimed)

    # --- overdue reviews --------------------------------------------------------------

    def notice_overdue(self) -> int:
        """Record ``screening.review_overdue`` once for each newly overdue screening.

        Only the very first scan (of any worker, ever) reads every pending urgent screening
        past its due time. A scan that finds all there was records how far it got, in the
        database; the next ones, of this worker or of one started later, read only those
        that became due since (less ``OVERDUE_RESCAN``, for late commits), so a scan costs
        the same however many overdue screenings wait unreviewed. After a scan that fails,
        or one that stopped at ``OVERDUE_BATCH``, the next goes on from the last complete one.
        """
        now = _now()
        cutoff = self.clock.cutoff(now)

        def deliveries(screening: EventFacts) -> list[NewDelivery]:
            return self.notifier.deliveries(REVIEW_OVERDUE, screening, "pending", now)

        covered = self._overdue_covered
        if covered is None:
            # Just started: go on from the last complete scan of any worker, if one was.
            covered = self.outbox.overdue_covered(self.clock.urgent)
        noticed = self.outbox.notice_overdue(
            self.clock.urgent,
            cutoff,
            now,
            deliveries,
            since=None if covered is None else covered - OVERDUE_RESCAN,
        )
        if noticed < OVERDUE_BATCH:
            self._overdue_covered = cutoff
            self.outbox.record_overdue_covered(self.clock.urgent, cutoff)
        return noticed

    # --- the long-running worker ------------------------------------------------------

    def _sender(self, stop: threading.Event, poll_seconds: float, broke: threading.Event) -> None:
        """One sender thread: deliver while there is work, else wait ``poll_seconds``.

        Anything but the database being away stops the whole worker (``broke``), so that
        it exits non-zero and its supervisor restarts it, rather than living on with one
        sender fewer and nobody told."""
        import requests

        try:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        claimed = self.deliver_due(session, stop)
                    except SQLAlchemyError:
                        # The database is away (a restart): nothing is lost; try again shortly.
                        logger.warning("webhooks: the database did not answer", exc_info=True)
                        claimed = 0
                    if not claimed:
                        stop.wait(poll_seconds)
        except Exception:
            # Claimed rows stay leased until their lease ends; then any worker sends them.
            logger.exception("webhooks: a sender failed: stopping the worker")
            broke.set()
            stop.set()

    def run(
        self,
        stop: threading.Event,
        *,
        threads: int = 4,
        poll_seconds: float = 0.5,
        scan_seconds: float = 5.0,
    ) -> bool:
        """Deliver with ``threads`` senders and look for overdue reviews every
        ``scan_seconds`` until ``stop`` is set; then let the senders finish their attempts.

        Returns False when the worker stopped because a sender failed (see ``_sender``)."""
        broke = threading.Event()
        senders = [
            threading.Thread(
                target=self._sender,
                args=(stop, poll_seconds, broke),
                name=f"webhook-sender-{n}",
            )
            for n in range(threads)
        ]
        for sender in senders:
            sender.start()
        logger.info(
            "webhooks: worker started",
            extra={"endpoints": sorted(self.endpoints), "threads": threads},
        )
        try:
            while not stop.is_set():
                try:
                    noticed = self.notice_overdue()
                    record_overdue_scan()
                    if noticed:
                        logger.info("webhooks: overdue reviews noticed", extra={"count": noticed})
                except SQLAlchemyError:
                    logger.warning("webhooks: the database did not answer", exc_info=True)
                stop.wait(scan_seconds)
        finally:
            # Also when the scan itself failed: the senders stop, and the error goes on up.
            stop.set()
            for sender in senders:
                sender.join()
        logger.info("webhooks: worker stopped")
        return not broke.is_set()
