"""The services an app runs on, built once from its settings (no web framework here).

``build`` opens the database and makes each service; the adapters keep the result
(``screening.extension`` puts it on the Flask app) and ask it for what they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from screening.rules.i18n import Catalog
from screening.rules.rulebook import Rulebook
from screening.services.cds import CdsService
from screening.services.config import Settings
from screening.services.identity import OidcSignIn
from screening.services.keys import Authenticator
from screening.services.notifications import NotificationService
from screening.services.oauth import AccessTokens
from screening.services.screenings import ScreeningService
from screening.services.sessions import SessionService
from screening.services.smart import SmartLaunch
from screening.services.triage import ReviewClock
from screening.services.webhooks import Notifier
from screening.storage.database import make_engine
from screening.storage.database import refresh_sqlite_statistics
from screening.storage.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    """Everything an app's requests and commands use, made at start-up."""

    settings: Settings
    #: The database the services share.
    store: Store
    authenticator: Authenticator
    screenings: ScreeningService
    notifications: NotificationService
    cds: CdsService
    sessions: SessionService
    access_tokens: AccessTokens
    #: None: OpenID Connect sign-in is off.
    identity: OidcSignIn | None
    #: The EHRs that may launch the review pages, by the ``iss`` they send.
    smart: Mapping[str, SmartLaunch]

    @property
    def rulebook(self) -> Rulebook:
        """Every rule package loaded at start-up."""
        return self.settings.rulebook

    @property
    def catalogs(self) -> Mapping[str, Catalog]:
        """The patient texts by language."""
        return self.rulebook.catalogs


def build(settings: Settings, default_database: Path) -> Services:
    """Open the database (``default_database``, an SQLite file, unless the settings name
    one) and make every service on it."""
    url = settings.database_url or f"sqlite:///{default_database}"
    engine = make_engine(url)
    refresh_sqlite_statistics(engine)
    store = Store(engine)
    rulebook = settings.rulebook
    notifier = Notifier(settings.webhooks, settings.public_url)
    clock = ReviewClock.for_outcomes(rulebook.outcomes, settings.urgent_review_minutes)
    screenings = ScreeningService(store, rulebook, notifier, clock)
    return Services(
        settings=settings,
        store=store,
        authenticator=Authenticator(settings.api_keys),
        screenings=screenings,
        notifications=NotificationService(store, notifier, clock),
        cds=CdsService(
            store,
            settings.cds_clients,
            settings.public_url,
            screenings=screenings,
            smart_issuers=frozenset(client.iss for client in settings.smart_clients),
        ),
        sessions=SessionService(
            store, idle=settings.session_idle, lifetime=settings.session_lifetime
        ),
        access_tokens=AccessTokens(settings.oauth_issuers),
        identity=_identity(settings),
        smart={
            client.iss: SmartLaunch(client, f"{settings.public_url}/smart/callback")
            for client in settings.smart_clients
        },
    )


def _identity(settings: Settings) -> OidcSignIn | None:
    """OpenID Connect sign-in, its redirect URI built from ``SCREENING_PUBLIC_URL``."""
    oidc = settings.oidc
    if oidc is None:
        return None
    assert settings.public_url is not None, "the settings require it with OIDC"
    return OidcSignIn(oidc, settings.public_url + "/review/oidc/callback")
