from __future__ import annotations

import pytest

from panjereh.gateway.config import CONTRACT_PUBLIC_ROUTES, CONTRACT_ROUTES, RouteClass
from panjereh.gateway.routing import (
    PORTAL,
    AccessRules,
    BadPath,
    RouteTable,
    normalise,
    route_class,
)

TABLE = RouteTable(CONTRACT_ROUTES, portal=False)
WITH_PORTAL = RouteTable(CONTRACT_ROUTES, portal=True)


class TestNormalise:
    @pytest.mark.parametrize(
        "raw",
        [
            b"/api/v1/catalog/../../../openapi.json",
            b"/api/v1/catalog/%2e%2e/%2e%2e/%2e%2e/openapi.json",
            b"/api/v1/catalog/%2E%2E/%2E%2E/%2E%2E/docs",
            b"/api/v1/catalog/.%2e/.%2e/.%2e/readyz",
            b"/api/v1/catalog/..%2f..%2f..%2fopenapi.json",
            b"/api/v1/catalog/%2e%2e%2f%2e%2e%2f%2e%2e%2fmetrics",
            b"/api/v1/catalog/..;/..;/..;/openapi.json",
            b"/api/v1/catalog/..%3b/..%3b/..%3b/openapi.json",
            b"/api/v1/catalog/%252e%252e/%252e%252e/%252e%252e/openapi.json",
            b"/api/v1/catalog/%252f..%252f..%252fdocs",
            b"/api/v1/catalog/..\\..\\..\\docs",
            b"/api/v1/catalog/..%5c..%5c..%5cdocs",
            b"/api/v1/catalog/./services",
            b"/api/v1/catalog/services/..",
            b"/api/v1/catalog/services%00",
            b"/api/v1/catalog/services%0a",
            b"api/v1/catalog/services",
        ],
    )
    def test_refuses_whatever_could_resolve_elsewhere(self, raw: bytes) -> None:
        with pytest.raises(BadPath):
            normalise(raw)

    def test_keeps_ordinary_paths_and_their_escapes(self) -> None:
        raw = b"/api/v1/catalog/services/%D8%AA%D8%B3%D8%AA/versions"
        assert normalise(raw) == ("/api/v1/catalog/services/تست/versions", raw)

    def test_dots_inside_a_segment_are_no_dot_segment(self) -> None:
        assert normalise(b"/.well-known/jwks.json")[0] == "/.well-known/jwks.json"
        assert normalise(b"/api/v1/verify/doc-1/qr.png")[0] == "/api/v1/verify/doc-1/qr.png"

    def test_repeated_slashes_collapse_and_the_collapsed_path_is_forwarded(self) -> None:
        assert normalise(b"//api//v1/catalog///services") == (
            "/api/v1/catalog/services",
            b"/api/v1/catalog/services",
        )


class TestRouteTable:
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
    def test_each_contract_prefix_reaches_its_service(self, path: str, service: str) -> None:
        assert TABLE.upstream_for(path) == service
        assert WITH_PORTAL.upstream_for(path) == service

    @pytest.mark.parametrize(
        "path", ["/api/v1/measures", "/api/v2/catalog/services", "/api/v1/catalog", "/api"]
    )
    def test_api_paths_outside_the_table_reach_nobody_not_even_the_portal(self, path: str) -> None:
        assert TABLE.upstream_for(path) is None
        assert WITH_PORTAL.upstream_for(path) is None

    @pytest.mark.parametrize("path", ["/", "/services/passport", "/fa/login", "/static/app.css"])
    def test_the_rest_is_the_portal_when_there_is_one(self, path: str) -> None:
        assert WITH_PORTAL.upstream_for(path) == PORTAL
        assert TABLE.upstream_for(path) is None

    @pytest.mark.parametrize("path", ["/metrics", "/redoc", "/docs/anything"])
    def test_process_internal_paths_never_reach_the_portal(self, path: str) -> None:
        assert WITH_PORTAL.upstream_for(path) is None

    def test_the_route_table_comes_from_configuration(self) -> None:
        table = RouteTable({"/api/v9/things/": "catalog"}, portal=False)
        assert table.upstream_for("/api/v9/things/1") == "catalog"
        assert table.upstream_for("/api/v1/catalog/services") is None


class TestAccessRules:
    rules = AccessRules(CONTRACT_PUBLIC_ROUTES)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/catalog/services"),
            ("HEAD", "/api/v1/catalog/services"),
            ("GET", "/api/v1/catalog/services/passport/versions/3"),
            ("POST", "/api/v1/auth/otp"),
            ("POST", "/api/v1/auth/otp/verify"),
            ("POST", "/api/v1/auth/token"),
            ("GET", "/.well-known/jwks.json"),
            ("GET", "/api/v1/verify/doc-1/qr.png"),
            ("GET", "/api/v1/requests/stats"),
        ],
    )
    def test_public_routes(self, method: str, path: str) -> None:
        assert self.rules.is_public(method, path)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/api/v1/catalog/services"),
            ("GET", "/api/v1/catalog/services/passport/draft"),
            ("PUT", "/api/v1/catalog/services/passport/draft"),
            ("GET", "/api/v1/me"),
            ("POST", "/api/v1/auth/logout"),
            ("GET", "/api/v1/requests"),
            ("GET", "/api/v1/requests/12345"),
            ("GET", "/api/v1/me/data-access"),
            ("GET", "/api/v1/inquiry-types"),
            ("POST", "/api/v1/inquiries"),
            ("GET", "/api/v1/auth/otp"),
            ("GET", "/api/v1/catalog/services/a/versions/3/extra"),
        ],
    )
    def test_everything_else_needs_a_token(self, method: str, path: str) -> None:
        assert not self.rules.is_public(method, path)

    def test_a_malformed_pattern_is_refused(self) -> None:
        with pytest.raises(ValueError, match="METHOD /path"):
            AccessRules(["GET api/v1/things"])


class TestRouteClass:
    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            ("POST", "/api/v1/auth/otp", RouteClass.OTP_REQUEST),
            ("POST", "/api/v1/auth/otp/verify", RouteClass.OTP_VERIFY),
            ("POST", "/api/v1/auth/token", RouteClass.TOKEN),
            ("GET", "/api/v1/catalog/services", RouteClass.SEARCH),
            ("GET", "/api/v1/catalog/services/passport", RouteClass.READ),
            ("POST", "/api/v1/requests", RouteClass.WRITE),
            ("DELETE", "/api/v1/admin/clients/x", RouteClass.WRITE),
            ("GET", "/api/v1/me", RouteClass.READ),
        ],
    )
    def test_classes(self, method: str, path: str, expected: RouteClass) -> None:
        assert route_class(method, path) is expected
