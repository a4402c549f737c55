"""The review pages opened from the EHR: SMART App Launch, EHR launch (identity-v1.md part 2).

The EHR opens ``/smart/launch?iss=<its FHIR base>&launch=<opaque>``. For an ``iss`` in
``SCREENING_SMART_CLIENTS`` the service reads ``<iss>/.well-known/smart-configuration`` and
signs the clinician in there, as for OpenID Connect (the same state, PKCE and ID token
checks, ``aud`` and ``launch`` added). The token response names the ``patient``; the ID
token's ``fhirUser`` must be a Practitioner or PractitionerRole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from screening.services.identity import OidcConfig
from screening.services.identity import OidcSignIn
from screening.services.identity import PendingSignIn
from screening.services.identity import Person
from screening.services.identity import SignInRefused
from screening.services.settings import http_url
from screening.services.settings import json_objects

logger = logging.getLogger(__name__)

SETTING = "SCREENING_SMART_CLIENTS"
SCOPES = "launch openid fhirUser"
_PEOPLE = ("Practitioner", "PractitionerRole")
#: A patient id as api-v1 takes a patient_ref: the bare FHIR id.
_PATIENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


@dataclass(frozen=True, slots=True)
class SmartClient:
    """An EHR allowed to launch the review pages."""

    #: The FHIR base URL the EHR sends as ``iss``.
    iss: str
    client_id: str
    #: None: a public client (PKCE alone).
    client_secret: str | None
    #: Origins that may frame the pages in a session this EHR launched.
    frame_ancestors: tuple[str, ...] = ()


def parse_smart_clients(value: Any) -> tuple[SmartClient, ...]:
    """``SCREENING_SMART_CLIENTS``: a JSON array of EHRs (empty or unset: none)."""
    clients: list[SmartClient] = []
    for where, entry in json_objects(
        SETTING,
        value,
        "EHRs",
        '{"iss": ..., "client_id": ...}',
        "iss and client_id",
        {"iss", "client_id", "client_secret", "frame_ancestors"},
    ):
        iss = entry.get("iss")
        if not isinstance(iss, str) or not http_url(iss):
            raise ValueError(f"{where}: iss must be the EHR's FHIR base URL (http or https)")
        client_id = entry.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise ValueError(f"{where}: client_id must be this service's id at the EHR")
        secret = entry.get("client_secret")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError(f"{where}: client_secret must be a string when given")
        ancestors = entry.get("frame_ancestors", [])
        if not isinstance(ancestors, list) or not all(_is_origin(a) for a in ancestors):
            raise ValueError(f"{where}: frame_ancestors must list origins (https://host[:port])")
        if any(known.iss == iss.rstrip("/") for known in clients):
            raise ValueError(f"{where}: the iss {iss} is listed twice")
        clients.append(SmartClient(iss.rstrip("/"), client_id, secret, tuple(ancestors)))
    return tuple(clients)


def _is_origin(value: Any) -> bool:
    """An origin, as a CSP source names one: scheme, host and port, nothing else."""
    if not isinstance(value, str) or not http_url(value):
        return False
    rest = value.split("://", 1)[1]
    return "/" not in rest and "?" not in rest


class SmartLaunch(OidcSignIn):
    """Signing in at one EHR's authorization server, from its SMART configuration."""

    def __init__(self, client: SmartClient, redirect_uri: str) -> None:
        config = OidcConfig(
            issuer=client.iss,
            client_id=client.client_id,
            client_secret=client.client_secret or "",
            scopes=SCOPES,
            # Unused: is_clinician reads fhirUser.
            roles_claim="fhirUser",
            clinician_roles=frozenset(),
            name=client.iss,
        )
        super().__init__(config, redirect_uri)
        self.client = client

    #: The EHR's SMART configuration, below its FHIR base (``config.issuer`` here).
    METADATA_PATH = "/.well-known/smart-configuration"

    def metadata_usable(self, document: dict[str, Any]) -> bool:
        """Any JSON object: what a launch needs of it is checked by ``checked_metadata``."""
        return True

    def checked_metadata(self) -> dict[str, Any]:
        """The SMART configuration, refused when it can't be used as the contract needs."""
        metadata = self.metadata()
        methods = metadata.get("code_challenge_methods_supported")
        if not isinstance(methods, list) or "S256" not in methods:
            raise SignInRefused("the EHR does not offer PKCE S256")
        for field in ("authorization_endpoint", "token_endpoint", "issuer", "jwks_uri"):
            if not isinstance(metadata.get(field), str):
                raise SignInRefused(f"the EHR's SMART configuration names no {field}")
        return metadata

    def expected_issuer(self) -> str:
        """ID tokens come from the SMART configuration's ``issuer``."""
        issuer = self.checked_metadata()["issuer"]
        assert isinstance(issuer, str)
        return issuer

    def start_launch(self, launch: str, iss: str) -> tuple[str, PendingSignIn]:
        """The authorization URL for a launch: ``aud`` the EHR's FHIR base as the EHR sent
        it (``iss``, which names this client), its ``launch``."""
        self.checked_metadata()
        return self.start("/review/", aud=iss, launch=launch)

    def finish_launch(
        self, params: Mapping[str, str], pending: PendingSignIn | None
    ) -> tuple[Person, str]:
        """The clinician a launch signs in and the patient it is for.

        Refused (``SignInRefused``) as an OpenID Connect callback is, and also without an
        ``id_token`` or a ``patient`` in the token response; a ``fhirUser`` that is not a
        Practitioner or PractitionerRole (a patient or related person) is a 403."""
        self.checked_metadata()
        token = self.exchange(params, pending)
        id_token, patient = token.get("id_token"), token.get("patient")
        if not isinstance(id_token, str) or pending is None:
            raise SignInRefused("no ID token")
        if not isinstance(patient, str) or not patient or not set(patient) <= _PATIENT_CHARS:
            raise SignInRefused("no usable patient in the token response")
        claims = self.check_id_token(id_token, pending.nonce)
        return self.person(claims, "smart"), patient

    def is_clinician(self, claims: Mapping[str, Any]) -> bool:
        """A launch signs in a practitioner: ``fhirUser`` a Practitioner or PractitionerRole."""
        return _is_practitioner(claims.get("fhirUser"))


def _is_practitioner(fhir_user: Any) -> bool:
    """Whether ``fhirUser`` (relative or absolute) names a Practitioner or PractitionerRole."""
    if not isinstance(fhir_user, str):
        return False
    parts = fhir_user.rstrip("/").split("/")
    return len(parts) >= 2 and parts[-2] in _PEOPLE and bool(parts[-1])
