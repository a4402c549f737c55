"""What ``create_app`` set up, kept on the app and found again by views and commands.

``install`` stores the loaded rules, the translations, the API keys and the
screening service (which owns the database) in ``app.extensions``; the
accessors below find them for the app of the current request or command.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import cast

from flask import Flask
from flask import current_app

from screening.rules.i18n import Catalog
from screening.rules.rulebook import Rulebook
from screening.services.cds import CdsClient
from screening.services.cds import CdsService
from screening.services.keys import ApiKey
from screening.services.keys import Authenticator
from screening.services.notifications import NotificationService
from screening.services.screenings import ScreeningService
from screening.services.sessions import SessionService
from screening.services.triage import ReviewClock
from screening.services.webhooks import Endpoint
from screening.services.webhooks import Notifier
from screening.storage.store import Store
from screening.storage.store import make_engine
from screening.storage.store import refresh_sqlite_statistics

RULES_EXTENSION = "screening.rules"
I18N_EXTENSION = "screening.i18n"
AUTH_EXTENSION = "screening.auth"
SCREENINGS_EXTENSION = "screening.screenings"
SESSIONS_EXTENSION = "screening.sessions"
NOTIFICATIONS_EXTENSION = "screening.notifications"
CDS_EXTENSION = "screening.cds"


def install(
    app: Flask,
    *,
    rulebook: Rulebook,
    catalogs: Mapping[str, Catalog],
    keys: tuple[ApiKey, ...],
    database_url: str,
    endpoints: tuple[Endpoint, ...] = (),
    public_url: str | None = None,
    review_minutes: int,
    cds_clients: tuple[CdsClient, ...] = (),
) -> None:
    """Keep what the app loaded at start-up, and open its database."""
    app.extensions[RULES_EXTENSION] = rulebook
    app.extensions[I18N_EXTENSION] = dict(catalogs)
    app.extensions[AUTH_EXTENSION] = Authenticator(keys)
    engine = make_engine(database_url)
    refresh_sqlite_statistics(engine)
    store = Store(engine)
    notifier = Notifier(endpoints, public_url)
    clock = ReviewClock.for_outcomes(rulebook.outcomes, review_minutes)
    app.extensions[SCREENINGS_EXTENSION] = ScreeningService(store, rulebook, notifier, clock)
    app.extensions[NOTIFICATIONS_EXTENSION] = NotificationService(store, notifier, clock)
    app.extensions[CDS_EXTENSION] = CdsService(store, cds_clients, public_url)


def install_sessions(app: Flask, *, idle: timedelta, lifetime: timedelta) -> None:
    """Keep the review pages' sessions in the database ``install`` opened."""
    store = cast(ScreeningService, app.extensions[SCREENINGS_EXTENSION]).store
    app.extensions[SESSIONS_EXTENSION] = SessionService(store, idle=idle, lifetime=lifetime)


def rulebook() -> Rulebook:
    """The questionnaire and ruleset the running app loaded at start-up."""
    return cast(Rulebook, current_app.extensions[RULES_EXTENSION])


def catalogs() -> dict[str, Catalog]:
    """The patient texts by language."""
    return cast(dict[str, Catalog], current_app.extensions[I18N_EXTENSION])


def authenticator() -> Authenticator:
    """The configured API keys."""
    return cast(Authenticator, current_app.extensions[AUTH_EXTENSION])


def screenings() -> ScreeningService:
    """Submitting, reading, listing and reviewing screenings."""
    return cast(ScreeningService, current_app.extensions[SCREENINGS_EXTENSION])


def sessions() -> SessionService:
    """The review pages' sign-in sessions."""
    return cast(SessionService, current_app.extensions[SESSIONS_EXTENSION])


def notifications() -> NotificationService:
    """Webhook deliveries and overdue reviews."""
    return cast(NotificationService, current_app.extensions[NOTIFICATIONS_EXTENSION])


def cds() -> CdsService:
    """The trusted CDS clients, their tokens, and the cards and feedback."""
    return cast(CdsService, current_app.extensions[CDS_EXTENSION])
