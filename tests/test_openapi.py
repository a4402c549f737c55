"""openapi.yaml is a valid OpenAPI 3.1 document and matches the routes both ways."""

from __future__ import annotations

import re

import yaml
from flask import Flask
from openapi_spec_validator import validate

from screening import PROJECT_ROOT

SPEC = yaml.safe_load((PROJECT_ROOT / "openapi.yaml").read_text(encoding="utf-8"))
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def test_spec_is_valid() -> None:
    validate(SPEC)


def _routes(app: Flask) -> set[tuple[str, str]]:
    """Every (path, method) the app serves, in OpenAPI path syntax."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - IGNORED_METHODS:
            routes.add((path, method.lower()))
    return routes


def _documented() -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        (path, method)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in methods
    }


def test_every_route_is_documented_and_every_documented_route_exists(app: Flask) -> None:
    assert _routes(app) == _documented()


def test_every_operation_documents_its_errors() -> None:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            assert "405" in operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response.get("$ref", "")
                    target = (
                        SPEC["components"]["responses"][ref.rsplit("/", 1)[-1]] if ref else response
                    )
                    assert "application/problem+json" in target["content"], (path, method, status)
