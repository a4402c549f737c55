"""CDS Hooks 2.0 clients: who may call (``SCREENING_CDS_CLIENTS``), checking the JWT an
EHR signs each call with, fetching what the EHR did not prefetch, and cards and feedback.

The JWT checks follow CDS Hooks 2.0 "Trusting CDS Clients" and ehr-v1.md: a configured
``iss``; the key found by ``kid`` in that client's JWK Set (fetched and cached, fetched
again once for an unknown ``kid``); an asymmetric ``alg``; ``aud`` the called URL;
``exp`` and ``iat`` within 60 s of clock skew; a ``jti`` never seen before (kept in the
database until the token expires). PyJWT checks the signature and the claims.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import jwt
import requests

from screening.records import Card
from screening.records import CardFeedback
from screening.records import CardFeedbackEntry
from screening.rules.i18n import DEFAULT
from screening.rules.rulebook import Rulebook
from screening.services.cds_cards import PATIENT_PLACEHOLDER
from screening.services.cds_cards import PREFETCH_KEY
from screening.services.cds_cards import card_for
from screening.services.cds_cards import latest_response
from screening.services.cds_cards import moved
from screening.services.cds_cards import prefetch_query
from screening.services.jwts import ALGORITHMS
from screening.services.jwts import LEEWAY_SECONDS
from screening.services.problems import ProblemError
from screening.services.problems import ValidationProblem
from screening.services.screenings import ScreeningService
from screening.services.settings import http_url
from screening.services.settings import json_array
from screening.storage.database import json_digest
from screening.storage.store import Store

logger = logging.getLogger(__name__)

SETTING = "SCREENING_CDS_CLIENTS"
#: The clock skew allowed on ``exp`` and ``iat``.
SKEW = timedelta(seconds=LEEWAY_SECONDS)
#: How long a fetched JWK Set is used before it is fetched again.
JWKS_TTL_SECONDS = 300.0
#: An unknown ``kid`` fetches the set again, but not more often than this (a caller
#: sending made-up kids must not make the service hammer the EHR's key server).
JWKS_REFETCH_SECONDS = 10.0
#: (connect, read) seconds for every outbound request: the EHR waits on the card.
TIMEOUT = (2.0, 3.0)
MAX_JWKS_BYTES = 64 * 1024
MAX_FHIR_BYTES = 1024 * 1024
_FIELDS = {"iss", "jwks_url", "jwks", "fhir_servers"}
_JTI = re.compile(r"^[\x21-\x7e]{1,255}\Z")


class CdsConfigError(ValueError):
    """``SCREENING_CDS_CLIENTS`` can't be used."""


class TokenRefused(Exception):
    """A CDS client's JWT failed a check; the reason goes to the log, never the caller."""


class FetchFailed(Exception):
    """The FHIR data a hook needs can't be had (CDS Hooks: 412)."""


#: A JWK as given (checked to make a key), by kid.
KeySet = dict[str, dict[str, object]]


def _key_set(value: Any, label: str) -> KeySet:
    """The keys of a JWK Set by ``kid``: asymmetric public keys with a ``kid`` only."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise CdsConfigError(f'{label}: must be a JWK Set, {{"keys": [...]}}')
    keys: KeySet = {}
    for position, raw in enumerate(value["keys"], start=1):
        where = f"{label} key {position}"
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str) or not raw["kid"]:
            raise CdsConfigError(f"{where}: needs a kid")
        if raw.get("kty") not in ("RSA", "EC"):
            raise CdsConfigError(f"{where}: must be an RSA or EC public key")
        if "d" in raw:
            raise CdsConfigError(f"{where}: is a private key; give the public key only")
        try:
            jwt.PyJWK.from_dict(raw)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise CdsConfigError(f"{where}: not a usable key ({exc})") from None
        keys[raw["kid"]] = raw
    return keys


@dataclass(frozen=True, slots=True)
class CdsClient:
    """An EHR trusted to call the CDS service."""

    iss: str
    jwks_url: str | None
    #: The keys given inline, by kid; None when they are fetched from ``jwks_url``.
    jwks: Mapping[str, dict[str, object]] | None
    #: URL prefixes of the FHIR servers the service may fetch from for this client.
    fhir_servers: tuple[str, ...] = ()

    def may_fetch_from(self, fhir_server: str) -> bool:
        """Whether ``fhir_server`` is one of this client's FHIR servers or below one.

        A prefix matches only at a path boundary, so ``https://ehr.example/fhir`` does
        not admit ``https://ehr.example/fhir-other`` nor ``https://ehr.example.evil``.
        """
        if not http_url(fhir_server):
            return False
        server = fhir_server.rstrip("/")
        for prefix in self.fhir_servers:
            base = prefix.rstrip("/")
            if server == base or server.startswith(base + "/"):
                return True
        return False

    def __repr__(self) -> str:
        return f"CdsClient(iss={self.iss!r})"


def parse_cds_clients(value: Any) -> tuple[CdsClient, ...]:
    """Parse ``SCREENING_CDS_CLIENTS`` (a JSON array, or the list Flask parsed from it).

    Raises ``CdsConfigError`` naming the setting and the entry.
    """
    message = f"{SETTING}: must be a JSON array of clients"
    value = json_array(value, CdsConfigError, message, message)
    clients: list[CdsClient] = []
    for position, entry in enumerate(value, start=1):
        label = f"{SETTING} entry {position}"
        if not isinstance(entry, dict):
            raise CdsConfigError(f"{label}: must be an object")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise CdsConfigError(f"{label}: unknown field(s) {', '.join(unknown)}")
        iss = entry.get("iss")
        if not isinstance(iss, str) or not 0 < len(iss) <= 255 or not iss.isprintable():
            raise CdsConfigError(f"{label}: iss must be a non-empty string (at most 255)")
        label = f"{label} ({iss})"
        if any(client.iss == iss for client in clients):
            raise CdsConfigError(f"{label}: iss is listed twice")
        if ("jwks_url" in entry) == ("jwks" in entry):
            raise CdsConfigError(f"{label}: give exactly one of jwks_url and jwks")
        jwks_url = entry.get("jwks_url")
        if jwks_url is not None and not http_url(jwks_url):
            raise CdsConfigError(f"{label}: jwks_url must be an http:// or https:// URL")
        keys = _key_set(entry["jwks"], f"{label} jwks") if "jwks" in entry else None
        servers = entry.get("fhir_servers", [])
        if not isinstance(servers, list) or not all(http_url(s) for s in servers):
            raise CdsConfigError(
                f"{label}: fhir_servers must be a list of http:// or https:// URL prefixes "
                "(no query, fragment or user name)"
            )
        clients.append(CdsClient(iss, jwks_url, keys, tuple(servers)))
    return tuple(clients)


# One requests.Session per thread (a Session is not promised to be thread-safe): calls to
# the same EHR's FHIR server or JWK Set reuse their keep-alive connection, so a CDS call
# does not pay a new TCP (and TLS) handshake each time.
_sessions = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def _get(url: str, headers: Mapping[str, str], limit: int) -> Any:
    """GET a JSON document: short timeout, no redirect, at most ``limit`` bytes."""
    try:
        with _session().get(
            url, headers=dict(headers), timeout=TIMEOUT, allow_redirects=False, stream=True
        ) as response:
            if response.status_code != 200:
                raise FetchFailed(f"answered {response.status_code}")
            body = response.raw.read(limit + 1, decode_content=True)
    except requests.RequestException as exc:
        raise FetchFailed(type(exc).__name__) from None
    if len(body) > limit:
        raise FetchFailed("answered more than the limit")
    try:
        return json.loads(body)
    except ValueError:
        raise FetchFailed("answered no JSON") from None


@dataclass
class _CachedSet:
    keys: KeySet
    fetched_at: float


@dataclass
class KeySets:
    """The clients' JWK Sets: fetched from ``jwks_url``, kept ``JWKS_TTL_SECONDS``, fetched
    again once when a token names a ``kid`` the cached set lacks.

    One lock per client: its calls wait for the one fetch under way rather than each
    fetching, and a client whose JWK Set is slow to answer holds up no other EHR.
    """

    fetch: Callable[[str], Any] = field(
        default=lambda url: _get(url, {"Accept": "application/json"}, MAX_JWKS_BYTES)
    )
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, _CachedSet] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_lock: threading.Lock = field(default_factory=threading.Lock)

    def _lock(self, iss: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(iss, threading.Lock())

    def _refresh(self, client: CdsClient, url: str) -> _CachedSet:
        try:
            keys = _key_set(self.fetch(url), "the JWK Set")
        except (FetchFailed, CdsConfigError) as exc:
            # Keep what was cached; try again no sooner than JWKS_REFETCH_SECONDS.
            logger.warning("cds: the JWK Set of %s can't be used: %s", client.iss, exc)
            cached = self._cache.get(client.iss)
            keys = cached.keys if cached is not None else {}
        entry = _CachedSet(keys, self.clock())
        self._cache[client.iss] = entry
        return entry

    def key(self, client: CdsClient, kid: str) -> dict[str, object]:
        """The client's key with this ``kid``; ``TokenRefused`` when it has none."""
        if client.jwks is not None:
            found = client.jwks.get(kid)
        else:
            assert client.jwks_url is not None
            with self._lock(client.iss):
                now = self.clock()
                cached = self._cache.get(client.iss)
                if cached is None or now - cached.fetched_at >= JWKS_TTL_SECONDS:
                    cached = self._refresh(client, client.jwks_url)
                elif kid not in cached.keys and now - cached.fetched_at >= JWKS_REFETCH_SECONDS:
                    cached = self._refresh(client, client.jwks_url)
                found = cached.keys.get(kid)
        if found is None:
            raise TokenRefused("unknown kid")
        return found


class TokenVerifier:
    """Checks the JWT of a CDS Hooks call and remembers its ``jti``."""

    def __init__(
        self, clients: Sequence[CdsClient], store: Store, keys: KeySets | None = None
    ) -> None:
        self.clients = {client.iss: client for client in clients}
        self.store = store
        self.keys = keys or KeySets()

    def verify(self, token: str, audience: str) -> CdsClient:
        """The client that signed ``token`` for ``audience``; ``TokenRefused`` otherwise."""
        try:
            # Read once unverified, for what picks the key: alg, kid, jku and iss.
            parts = jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("not a JWT") from None
        header, unverified = parts["header"], parts["payload"]
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRefused("algorithm not allowed")
        iss = unverified.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise TokenRefused("unknown iss")
        if "jku" in header and header["jku"] != client.jwks_url:
            raise TokenRefused("jku is not the configured jwks_url")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("no kid")
        jwk = self.keys.key(client, kid)
        if jwk.get("alg", alg) != alg:
            raise TokenRefused("key is for another algorithm")
        try:
            # Raises when the key's type does not fit alg (an EC key for RS256).
            key = jwt.PyJWK(jwk, algorithm=alg)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=client.iss,
                leeway=SKEW,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(type(exc).__name__) from None
        now = datetime.now(UTC)
        issued = datetime.fromtimestamp(claims["iat"], UTC)
        if issued > now + SKEW:
            raise TokenRefused("issued in the future")
        jti = claims["jti"]
        if not isinstance(jti, str) or not _JTI.match(jti):
            raise TokenRefused("jti is not a short printable string")
        # Kept while the token could still pass the exp check.
        expires = datetime.fromtimestamp(claims["exp"], UTC) + SKEW
        if not self.store.cds.remember_token_id(client.iss, jti, expires):
            raise TokenRefused("jti replayed")
        return client


def fetch_resource(
    client: CdsClient | None, fhir_server: str, access_token: str, query: str
) -> Any:
    """GET ``query`` from ``fhir_server`` with the EHR's access token: only from one of the
    calling client's FHIR servers (a clinician key has none), else ``FetchFailed`` with no
    request sent."""
    if client is None or not client.may_fetch_from(fhir_server):
        raise FetchFailed("fhirServer is not one of the client's fhir_servers")
    url = f"{fhir_server.rstrip('/')}/{query}"
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"}
    return _get(url, headers, MAX_FHIR_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientView:
    """A ``patient-view`` hook call, as the web layer read it."""

    #: Who called: the EHR's ``iss``, or a clinician key's name.
    caller: str
    #: The EHR's client (None for a clinician key, which may not have data fetched).
    client: CdsClient | None
    hook_instance: str
    patient_id: str
    #: The prefetched response or Bundle; None when the EHR did not prefetch it.
    prefetched: Any
    fhir_server: str | None
    access_token: str | None
    #: ``SCREENING_PUBLIC_URL``, which the card's link starts with; None: the card has no
    #: link (CDS Hooks links are absolute, and the Host a caller sent is never used).
    public_url: str | None


def _cannot_fetch() -> ProblemError:
    return ProblemError(
        "The FHIR data this service needs was not prefetched and can't be fetched from "
        "the given fhirServer.",
        status=412,
    )


class CdsService:
    """The CDS Hooks use cases: trusting EHRs, the card for a patient, the cards shown and
    their feedback."""

    def __init__(
        self,
        store: Store,
        clients: Sequence[CdsClient],
        public_url: str | None = None,
        *,
        screenings: ScreeningService,
        smart_issuers: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        #: ``SCREENING_PUBLIC_URL``: the base of the URLs tokens' ``aud`` must name.
        self.public_url = public_url
        #: The FHIR bases of the EHRs that may launch the review pages (SMART).
        self.smart_issuers = smart_issuers
        self.verifier = TokenVerifier(clients, store)
        self.screenings = screenings

    @property
    def rulebook(self) -> Rulebook:
        """The rules the cards are made with (the screening service's)."""
        return self.screenings.rulebook

    def patient_view(self, call: PatientView) -> Card | None:
        """The card for the patient's latest completed response (prefetched, or fetched
        from the EHR's FHIR server when not), stored under its uuid; None without one.

        The response is checked and decided exactly as a submission to the API (by the
        default package of the questionnaire version it answers); the card, for
        clinicians, is in English. Problems name their fields under where the response
        came from (``prefetch.questionnaireResponse`` or ``fhirServer...``)."""
        where = f"prefetch.{PREFETCH_KEY}"
        prefetched = call.prefetched
        if prefetched is None:
            # Not prefetched (the key left out or null): fetch it, when the EHR says where.
            if call.fhir_server is None:
                return None
            prefetched = self._fetch(call, call.fhir_server)
            where = f"fhirServer.{PREFETCH_KEY}"
        try:
            latest = latest_response(prefetched, self.rulebook)
            if latest is None:
                return None
            submission = self.screenings.check_fhir_submission(
                latest, self.rulebook.catalogs[DEFAULT]
            )
        except ValidationProblem as exc:
            raise moved(exc, where) from None
        result = submission.result
        screening_id = self.screening_for(submission.answers)
        review_url = None
        if call.public_url is not None:
            review_url = call.public_url + "/review/" + (screening_id or "")
        smart_url = None
        launches = (
            call.fhir_server is not None and call.fhir_server.rstrip("/") in self.smart_issuers
        )
        if call.public_url is not None and launches:
            smart_url = call.public_url + "/smart/launch"
        card = card_for(
            result,
            submission.package,
            review_url,
            stored=screening_id is not None,
            smart_url=smart_url,
        )
        self.record_card(
            card,
            caller=call.caller,
            hook_instance=call.hook_instance,
            patient_id=call.patient_id,
            outcome=result.outcome,
            screening_id=screening_id,
        )
        return card

    def _fetch(self, call: PatientView, fhir_server: str) -> Any:
        """The prefetch query's answer from the EHR's FHIR server (412 when it can't be had)."""
        if call.access_token is None:
            logger.info("cds: fetch refused", extra={"reason": "no fhirAuthorization"})
            raise _cannot_fetch()
        patient = quote(call.patient_id, safe="")
        query = prefetch_query(self.rulebook).replace(PATIENT_PLACEHOLDER, patient)
        try:
            return fetch_resource(call.client, fhir_server, call.access_token, query)
        except FetchFailed as exc:
            logger.info("cds: fetch failed", extra={"reason": str(exc)})
            raise _cannot_fetch() from None

    def verify(self, token: str, audience: str) -> CdsClient:
        """The client behind a JWT (see ``TokenVerifier.verify``)."""
        return self.verifier.verify(token, audience)

    def screening_for(self, answers: Mapping[str, Any]) -> str | None:
        """The newest stored screening with exactly these (checked) answers, if any."""
        return self.store.screenings.with_answers(json_digest(answers))

    def record_card(
        self,
        card: Card,
        *,
        caller: str,
        hook_instance: str,
        patient_id: str,
        outcome: str,
        screening_id: str | None,
    ) -> None:
        """Store what a card showed, under its uuid (audited against its screening)."""
        self.store.cds.record_card(
            {
                "uuid": card["uuid"],
                "shown_at": datetime.now(UTC),
                "caller": caller,
                "hook_instance": hook_instance,
                "patient_id": patient_id,
                "screening_id": screening_id,
                "outcome": outcome,
                "indicator": card["indicator"],
                "summary": card["summary"],
            }
        )

    def record_feedback(self, caller: str, entries: Sequence[CardFeedbackEntry]) -> int:
        """Store and audit feedback entries; return how many named an unknown card."""
        return self.store.cds.record_feedback(caller, entries)

    def card_feedback(self, screening_id: str) -> list[CardFeedback]:
        """The feedback received on the cards of one screening, oldest first."""
        return self.store.cds.card_feedback(screening_id)
