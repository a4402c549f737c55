"""API key configuration, token hashing and the keys command."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskCliRunner

from screening import StartupError
from screening import create_app
from screening.services.keys import Authenticator
from screening.services.keys import KeyConfigError
from screening.services.keys import parse_api_keys
from screening.services.keys import token_digest

PORTAL_HASH = token_digest("portal-token")
CLINICIAN_HASH = token_digest("clinician-token")


def test_entries_parse_and_tokens_are_found_by_hash() -> None:
    keys = parse_api_keys(f"portal-a:portal:{PORTAL_HASH}, dr-b:clinician:{CLINICIAN_HASH},")
    assert [(k.name, k.role) for k in keys] == [("portal-a", "portal"), ("dr-b", "clinician")]
    authenticator = Authenticator(keys)
    found = authenticator.identify("clinician-token")
    assert found is not None and found.name == "dr-b"
    assert authenticator.identify("clinician-token ") is None
    assert authenticator.identify(PORTAL_HASH) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("portal-a:portal", "entry 1: expected name:role:sha256hex"),
        (f"portal-a:admin:{PORTAL_HASH}", "entry 1 ('portal-a'): the role must be one of"),
        ("portal-a:portal:ABC", "entry 1 ('portal-a'): the hash must be 64 lowercase hex"),
        (f"portal-a:portal:{PORTAL_HASH.upper()}", "the hash must be 64 lowercase hex"),
        (f"bad name:portal:{PORTAL_HASH}", "entry 1: the name must be"),
        (
            f"a:portal:{PORTAL_HASH},a:clinician:{CLINICIAN_HASH}",
            "entry 2 ('a'): the name is used twice",
        ),
        (f"a:portal:{PORTAL_HASH},b:clinician:{PORTAL_HASH}", "entry 2 ('b'): the same token hash"),
    ],
)
def test_malformed_entry_is_named(value: str, fragment: str) -> None:
    with pytest.raises(KeyConfigError) as caught:
        parse_api_keys(value)
    assert fragment in str(caught.value)


def test_malformed_entry_stops_start_up() -> None:
    with pytest.raises(StartupError, match=r"SCREENING_API_KEYS entry 2 \('x'\)"):
        create_app({"TESTING": True, "API_KEYS": f"a:portal:{PORTAL_HASH},x:nurse:{PORTAL_HASH}"})


def test_keys_new_prints_a_token_and_its_entry(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["keys", "new", "--name", "portal-main", "--role", "portal"])
    assert result.exit_code == 0, result.output
    token = re.search(r"token \(shown once; give it to the caller\): (\S+)", result.output)
    entry = re.search(r"SCREENING_API_KEYS entry: (\S+)", result.output)
    assert token and entry
    assert entry.group(1) == f"portal-main:portal:{token_digest(token.group(1))}"
    assert len(token.group(1)) >= 40
    again = runner.invoke(args=["keys", "new", "--name", "portal-main", "--role", "portal"])
    assert token.group(1) not in again.output


def test_keys_new_refuses_a_bad_name_or_role(runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["keys", "new", "--name", "a b", "--role", "portal"]).exit_code == 2
    assert runner.invoke(args=["keys", "new", "--name", "ab", "--role", "root"]).exit_code == 2
