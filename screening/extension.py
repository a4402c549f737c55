"""The app's services on the Flask app, found again by views and commands.

``init_app`` keeps what ``screening.services.registry.build`` made in ``app.extensions``;
the accessors below find it for the app of the current request or command. This is the
only place the services meet Flask's application context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from flask import Flask
from flask import current_app

from screening.rules.i18n import Catalog
from screening.rules.rulebook import Rulebook
from screening.services.cds import CdsService
from screening.services.config import Settings
from screening.services.identity import OidcSignIn
from screening.services.keys import Authenticator
from screening.services.notifications import NotificationService
from screening.services.oauth import AccessTokens
from screening.services.registry import Services
from screening.services.screenings import ScreeningService
from screening.services.sessions import SessionService
from screening.services.smart import SmartLaunch

EXTENSION = "screening"


def init_app(app: Flask, services: Services) -> None:
    """Keep ``services`` on ``app``."""
    app.extensions[EXTENSION] = services


def of(app: Flask) -> Services:
    """The services of ``app`` (outside a request, as tests and tools hold an app)."""
    return cast(Services, app.extensions[EXTENSION])


def services() -> Services:
    """The services of the running app."""
    return of(current_app)


def settings() -> Settings:
    """The running app's settings, read and checked at start-up."""
    return services().settings


def rulebook() -> Rulebook:
    """The rule packages the running app loaded at start-up."""
    return services().rulebook


def catalogs() -> Mapping[str, Catalog]:
    """The patient texts by language."""
    return services().catalogs


def authenticator() -> Authenticator:
    """The configured API keys."""
    return services().authenticator


def screenings() -> ScreeningService:
    """Submitting, reading, listing and reviewing screenings."""
    return services().screenings


def access_tokens() -> AccessTokens:
    """The identity providers whose OAuth access tokens the API takes."""
    return services().access_tokens


def identity() -> OidcSignIn | None:
    """OpenID Connect sign-in; None when it is off."""
    return services().identity


def smart_launch(iss: str) -> SmartLaunch | None:
    """The SMART launch of the EHR whose FHIR base is ``iss``, if it is allowed."""
    return services().smart.get(iss.rstrip("/"))


def sessions() -> SessionService:
    """The review pages' sign-in sessions."""
    return services().sessions


def notifications() -> NotificationService:
    """Webhook deliveries and overdue reviews."""
    return services().notifications


def cds() -> CdsService:
    """The trusted CDS clients, their tokens, and the cards and feedback."""
    return services().cds
