"""What every JWT this service checks has in common: EHRs' CDS Hooks tokens (cds.py), OAuth
access tokens (oauth.py), and ID and logout tokens (identity.py)."""

from __future__ import annotations

#: Asymmetric algorithms only: a shared secret would let the service forge tokens itself.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
#: Clock skew allowed on ``exp``, ``nbf`` and ``iat`` (the contracts' 60 s).
LEEWAY_SECONDS = 60


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token has a JWT's three parts (API keys have no dots)."""
    return token.count(".") == 2
