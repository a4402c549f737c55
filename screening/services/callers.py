"""Who is calling: one object for every way in (an API key, a review session, an EHR's
signed token), named in the audit log and the access log and asked by the views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from screening.services.cds import CdsClient
from screening.services.keys import Principal

#: How the caller proved who they are.
Via = Literal["api_key", "review_session", "cds_client", "oauth_token"]


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller of one request."""

    #: The name kept in the audit and access logs: a key's name, or an EHR's issuer.
    name: str
    via: Via
    #: Who an API or review-session caller acts as (its role decides what it may do): an
    #: API key, or a client whose OAuth access token was verified.
    key: Principal | None = None
    #: The EHR's registered client behind a CDS Hooks caller.
    client: CdsClient | None = None

    @classmethod
    def with_key(cls, key: Principal, via: Via = "api_key") -> Caller:
        """A caller identified by an API key (a bearer token, or a review session's)."""
        return cls(key.name, via, key=key)

    @classmethod
    def from_ehr(cls, client: CdsClient) -> Caller:
        """An EHR whose signed token was verified."""
        return cls(client.iss, "cds_client", client=client)

    @property
    def actor_id(self) -> str:
        """How the audit log names the caller: ``key:<name>``, ``oauth:<client_id>``,
        ``oidc:<sub>``, ``smart:<sub>``, or an EHR's issuer."""
        return self.name if self.key is None else self.key.actor_id

    @property
    def role(self) -> str | None:
        """The key's role (``portal``, ``clinician``); None for an EHR."""
        return None if self.key is None else self.key.role
