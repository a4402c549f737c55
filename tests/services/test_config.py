"""The settings object: every SCREENING_* setting read, checked and typed in one place, and
the Configuration table of docs/operators.md in step with it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from screening import PROJECT_ROOT
from screening import StartupError
from screening import create_app
from screening.services.config import Settings
from screening.services.config import SettingsError
from screening.services.config import read_settings
from screening.services.config import setting_names
from screening.services.keys import token_digest
from tests.support.app import API_KEYS
from tests.support.app import SECRET_KEY

RULES = PROJECT_ROOT / "rules"
_ROW = re.compile(r"^\| `(SCREENING_[A-Z_]+)` \| (.*) \| (.*) \|$")


def _guide_table() -> dict[str, str]:
    """The Configuration table of docs/operators.md: each variable and its default column."""
    text = (PROJECT_ROOT / "docs" / "operators.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = (_ROW.match(line) for line in section.splitlines())
    return {row[1]: row[3] for row in rows if row}


def test_the_guide_table_lists_exactly_the_settings_read() -> None:
    assert sorted(_guide_table()) == sorted(setting_names())


def test_unset_settings_take_the_defaults_the_guide_gives() -> None:
    settings = read_settings({}, RULES)
    table = _guide_table()
    # Each default the table gives as a value, as the settings object holds it.
    given = {
        "SCREENING_PERMANENT_SESSION_LIFETIME": settings.session_idle.total_seconds(),
        "SCREENING_REVIEW_SESSION_LIFETIME": settings.session_lifetime.total_seconds(),
        "SCREENING_RATE_LIMIT": settings.rate_limit,
        "SCREENING_RATE_LIMIT_STORAGE": settings.rate_limit_storage,
        "SCREENING_TRUSTED_PROXIES": settings.trusted_proxies,
        "SCREENING_URGENT_REVIEW_MINUTES": settings.urgent_review_minutes,
    }
    for name, value in given.items():
        shown = re.match(r"`([^`]+)`", table[name])
        assert shown is not None, name
        expected: Any = shown[1]
        if isinstance(value, int | float):
            expected = float(expected)
        assert value == expected, name
    # The ones whose default is "none" or "off".
    assert settings.database_url is None and table["SCREENING_DATABASE_URL"].startswith("SQLite")
    optional = ("API_KEYS", "SECRET_KEY", "METRICS_KEY", "WEBHOOKS", "PUBLIC_URL")
    for name in (*optional, "CDS_CLIENTS", "OAUTH_ISSUERS"):
        assert table[f"SCREENING_{name}"].startswith("none"), name
    assert (settings.api_keys, settings.secret_key, settings.metrics_key) == ((), None, None)
    assert (settings.webhooks, settings.public_url, settings.cds_clients) == ((), None, ())
    assert settings.oauth_issuers == ()
    assert settings.review_insecure_cookies is False
    assert table["SCREENING_REVIEW_INSECURE_COOKIES"] == "off"
    assert settings.rulebook.default.ruleset.id == "lumbar-rfa"


def test_values_are_typed_as_the_modules_use_them() -> None:
    settings = read_settings(
        {
            "API_KEYS": API_KEYS,
            "SECRET_KEY": SECRET_KEY,
            "PERMANENT_SESSION_LIFETIME": 600,
            "REVIEW_SESSION_LIFETIME": 3600,
            "RATE_LIMIT": " 5/second ",
            "TRUSTED_PROXIES": 2,
            "METRICS_KEY": token_digest("scrape"),
            "URGENT_REVIEW_MINUTES": "30",
            "REVIEW_INSECURE_COOKIES": 1,
        },
        RULES,
    )
    assert [key.name for key in settings.api_keys] == ["portal-a", "portal-b", "dr-c"]
    assert settings.session_idle == timedelta(minutes=10)
    assert settings.session_lifetime == timedelta(hours=1)
    assert settings.rate_limit == "5/second"
    assert settings.trusted_proxies == 2
    assert settings.urgent_review_minutes == 30
    assert settings.review_insecure_cookies is True
    # The secret key stays out of a log line or a traceback.
    assert SECRET_KEY not in repr(settings)


BAD: list[tuple[str, Any]] = [
    ("RULES_DIR", "/nowhere/rules"),
    ("DATABASE_URL", "not a url"),
    ("API_KEYS", "portal-a:portal:nothex"),
    ("SECRET_KEY", "short"),
    ("PERMANENT_SESSION_LIFETIME", -5),
    ("REVIEW_SESSION_LIFETIME", "8h"),
    ("RATE_LIMIT", "lots"),
    ("RATE_LIMIT_STORAGE", "nosuch://host"),
    ("TRUSTED_PROXIES", 11),
    ("METRICS_KEY", "not-a-digest"),
    ("WEBHOOKS", "not json"),
    ("PUBLIC_URL", "ftp://example.org"),
    ("CDS_CLIENTS", "{}"),
    ("OAUTH_ISSUERS", '[{"issuer": "ftp://x"}]'),
    ("URGENT_REVIEW_MINUTES", 0),
    ("OIDC_ISSUER", "ftp://idp.example"),
    # Each of these only with SCREENING_OIDC_ISSUER.
    ("OIDC_CLIENT_ID", "screening"),
    ("OIDC_CLIENT_SECRET", "a-secret"),
    ("OIDC_SCOPES", "profile"),
    ("OIDC_ROLES_CLAIM", "realm access"),
    ("OIDC_CLINICIAN_ROLES", "clinician"),
    ("OIDC_NAME", "x" * 65),
    ("REVIEW_TOKEN_SIGN_IN", "sometimes"),
    ("SMART_CLIENTS", '[{"iss": "ftp://ehr"}]'),
]


def test_every_setting_that_can_be_wrong_is_tested_here() -> None:
    # REVIEW_INSECURE_COOKIES is a flag: any value is on or off.
    checked = {f"SCREENING_{name}" for name, _ in BAD} | {"SCREENING_REVIEW_INSECURE_COOKIES"}
    assert checked == set(setting_names())


@pytest.mark.parametrize(("name", "value"), BAD)
def test_an_unusable_setting_stops_start_up_naming_it(
    name: str, value: Any, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError) as caught:
        read_settings({name: value}, RULES)
    assert re.match(f"SCREENING_{name}[: ]", str(caught.value))
    if name == "DATABASE_URL":
        assert value not in str(caught.value)
    # The app says the same, as a start-up error the flask command prints plainly.
    with pytest.raises(StartupError, match=f"^SCREENING_{name}[: ]"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", name: value})


def test_settings_are_frozen() -> None:
    settings = read_settings({}, RULES)
    with pytest.raises(AttributeError):
        settings.rate_limit = ""  # type: ignore[misc]
    assert isinstance(settings, Settings)
