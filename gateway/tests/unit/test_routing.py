from __future__ import annotations

import pytest

from panjereh.gateway.routing import upstream_for


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/catalog/services", "catalog"),
        ("/api/v1/auth/otp", "identity"),
        ("/api/v1/me", "identity"),
        ("/api/v1/me/data-access", "inquiry-broker"),
        ("/api/v1/admin/clients", "identity"),
        ("/api/v1/dev/sms-outbox", "identity"),
        ("/.well-known/jwks.json", "identity"),
        ("/api/v1/requests", "requests"),
        ("/api/v1/requests/123/document", "requests"),
        ("/api/v1/agency/requests", "requests"),
        ("/api/v1/verify/doc-1", "requests"),
        ("/api/v1/inquiries", "inquiry-broker"),
        ("/api/v1/inquiries/abc", "inquiry-broker"),
        ("/api/v1/inquiry-types", "inquiry-broker"),
        ("/api/v1/audit/verify", "inquiry-broker"),
    ],
)
def test_each_contract_prefix_reaches_its_service(path: str, service: str) -> None:
    assert upstream_for(path) == service


@pytest.mark.parametrize("path", ["/", "/api/v1/measures", "/api/v2/catalog/services", "/admin"])
def test_paths_outside_the_contract_match_nothing(path: str) -> None:
    assert upstream_for(path) is None
