"""The catalog's own request dependencies."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from panjereh.catalog.dependencies import wants_jsonld


def request_accepting(accept: str | None) -> Request:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("accept", "jsonld"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("application/ld+json", True),
        ("APPLICATION/LD+JSON", True),
        ("application/ld+json, application/json;q=0.5", True),
        ("application/ld+json;q=0.5, application/json", False),
        ("application/json;q=0.4, application/ld+json;q=0.9", True),
        ("application/json, application/ld+json", False),  # a tie goes to the first listed
        ("application/ld+json;q=0", False),  # q=0: not acceptable
        ("application/ld+json;q=often", False),  # an unreadable weight counts as 0
    ],
)
def test_json_ld_only_when_the_client_prefers_it(accept: str | None, jsonld: bool) -> None:
    assert wants_jsonld(request_accepting(accept)) is jsonld
