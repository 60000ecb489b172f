"""The gateway over real HTTP on loopback, in front of recording upstreams."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import pytest

from panjereh.common.testing.tokens import JwksServer, SigningKey, TokenFactory, bearer
from panjereh.gateway.config import Bucket, ClassLimits, RouteClass

pytestmark = pytest.mark.integration

INTERNAL = b"INTERNAL"
GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
Upstreams = Any  # the ``recording`` fixture (conftest.Upstreams)

TRAVERSALS = [
    "/api/v1/catalog/%2e%2e/%2e%2e/%2e%2e/openapi.json",
    "/api/v1/catalog/%2E%2E/%2E%2E/%2E%2E/docs",
    "/api/v1/catalog/.%2e/.%2e/.%2e/readyz",
    "/api/v1/catalog/..%2f..%2f..%2fopenapi.json",
    "/api/v1/catalog/%2e%2e%2f%2e%2e%2f%2e%2e%2fmetrics",
    "/api/v1/catalog/..;/..;/..;/openapi.json",
    "/api/v1/catalog/..%3B/..%3B/..%3B/livez",
    "/api/v1/catalog/%252e%252e/%252e%252e/%252e%252e/openapi.json",
    "/api/v1/catalog/%252e%252e%252f%252e%252e%252fdocs",
    "/api/v1/catalog/..%5c..%5c..%5copenapi.json",
    "/api/v1/catalog/../../../openapi.json",
    "/api/v1/auth/%2e%2e/%2e%2e/%2e%2e/docs",
    "/.well-known/%2e%2e/openapi.json",
    "/api/v1/requests/%2e%2e/%2e%2e/metrics",
    "/api/v1/inquiries/..%2f..%2f..%2fopenapi.json",
]


async def raw_get(base_url: str, raw_target: str, headers: dict[str, str] | None = None) -> Any:
    """A GET whose request target goes on the wire exactly as written (no client clean-up)."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET {raw_target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


class TestTraversal:
    @pytest.mark.parametrize("target", TRAVERSALS)
    async def test_never_reaches_an_upstreams_internal_route(
        self, start_gateway: GatewayFactory, recording: Upstreams, target: str
    ) -> None:
        async with start_gateway(portal_url=recording.urls["portal"]) as client:
            status, _, body = await raw_get(str(client.base_url), target)
        assert status in (400, 404)
        assert INTERNAL not in body
        assert json.loads(body)["code"] in ("path_refused", "route_not_found")
        for upstream in recording.all():
            assert upstream.reached_internal() == []

    @pytest.mark.parametrize(
        "target", ["/metrics", "/redoc", "/docs/../metrics", "/api/v1/catalog/../metrics"]
    )
    async def test_the_portal_never_serves_internal_paths_either(
        self, start_gateway: GatewayFactory, recording: Upstreams, target: str
    ) -> None:
        async with start_gateway(portal_url=recording.urls["portal"]) as client:
            status, _, body = await raw_get(str(client.base_url), target)
        assert status in (400, 404)
        assert INTERNAL not in body
        assert recording.portal.seen == []

    async def test_exactly_the_normalised_path_is_forwarded(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        async with start_gateway() as client:
            status, _, _ = await raw_get(
                str(client.base_url), "//api/v1/catalog//services/%D8%AA?q=%D8%B3&page=2"
            )
        assert status == 200
        (seen,) = recording.catalog.seen
        assert seen.raw_path == b"/api/v1/catalog/services/%D8%AA"
        assert seen.path == "/api/v1/catalog/services/ت"
        assert seen.query == b"q=%D8%B3&page=2"


class TestEdgeAuthentication:
    async def test_public_routes_need_no_token(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        async with start_gateway() as client:
            search = await client.get("/api/v1/catalog/services", params={"q": "گواهی"})
            otp = await client.post("/api/v1/auth/otp", json={"mobile": "x"})
            jwks = await client.get("/.well-known/jwks.json")
        assert [search.status_code, otp.status_code, jwks.status_code] == [200, 200, 200]
        assert search.json()["upstream"] == "catalog"
        assert otp.json()["upstream"] == "identity"

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/me"),
            ("POST", "/api/v1/requests"),
            ("POST", "/api/v1/catalog/services"),
            ("GET", "/api/v1/catalog/services/passport/draft"),
            ("GET", "/api/v1/inquiry-types"),
            ("GET", "/api/v1/me/data-access"),
        ],
    )
    async def test_protected_routes_without_a_token_stop_at_the_edge(
        self, start_gateway: GatewayFactory, recording: Upstreams, method: str, path: str
    ) -> None:
        async with start_gateway() as client:
            response = await client.request(method, path)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == "token_missing"
        assert all(upstream.seen == [] for upstream in recording.all())

    async def test_a_valid_token_passes_through_untouched(
        self, start_gateway: GatewayFactory, recording: Upstreams, token_factory: TokenFactory
    ) -> None:
        token = token_factory()
        async with start_gateway() as client:
            response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 200
        (seen,) = recording.identity.seen
        assert seen.header("authorization") == f"Bearer {token}"  # services verify it again

    async def test_a_remembered_token_of_an_ended_session_stops_at_the_edge_within_seconds(
        self,
        start_gateway: GatewayFactory,
        recording: Upstreams,
        token_factory: TokenFactory,
        jwks_server: JwksServer,
    ) -> None:
        ended = f"s-{secrets.token_hex(6)}"
        token = token_factory(sid=ended)
        passed = 0
        try:
            async with start_gateway(revocation_poll_seconds=0.1) as client:
                accepted = await client.get("/api/v1/me", headers=bearer(token))
                passed += accepted.status_code == 200
                jwks_server.revoked[ended] = time.time() + 600  # identity ends the session
                async with asyncio.timeout(5):
                    while (
                        refused := await client.get("/api/v1/me", headers=bearer(token))
                    ).status_code == 200:
                        passed += 1
                        await asyncio.sleep(0.05)
        finally:
            jwks_server.revoked.pop(ended, None)
        assert accepted.status_code == 200
        assert refused.status_code == 401
        assert refused.json()["code"] == "token_revoked"
        # the edge answered: the refused request never reached identity
        assert len(recording.identity.seen) == passed

    @pytest.mark.parametrize(
        "forge",
        ["tampered", "expired", "wrong_audience", "unknown_kid", "alg_none", "other_key", "hs256"],
    )
    async def test_unacceptable_tokens_are_refused_at_the_edge(
        self,
        start_gateway: GatewayFactory,
        recording: Upstreams,
        token_factory: TokenFactory,
        forge: str,
    ) -> None:
        token = forged(token_factory, forge)
        async with start_gateway() as client:
            response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.json()["code"] in ("token_invalid", "token_expired")
        assert recording.identity.seen == []

    async def test_a_bad_token_on_a_public_route_is_left_to_the_service(
        self, start_gateway: GatewayFactory, recording: Upstreams, token_factory: TokenFactory
    ) -> None:
        token = forged(token_factory, "expired")
        async with start_gateway() as client:
            response = await client.get("/api/v1/catalog/services", headers=bearer(token))
        assert response.status_code == 200
        assert recording.catalog.seen[0].header("authorization") == f"Bearer {token}"


def forged(token_factory: TokenFactory, how: str) -> str:
    if how == "tampered":
        head, body, signature = token_factory().split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        claims["roles"] = ["platform-admin"]
        changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return f"{head}.{changed}.{signature}"
    if how == "expired":
        return token_factory(exp=timedelta(minutes=-10))
    if how == "wrong_audience":
        return token_factory(aud="someone-else")
    if how == "unknown_kid":
        return token_factory(kid="no-such-key")
    if how == "alg_none":
        return token_factory.unsigned()
    if how == "other_key":
        return token_factory.signed_by(SigningKey(kid=token_factory.key.kid))
    return token_factory.hs256_with_public_key()


def tight(per_ip: tuple[float, int] | None, per_client: tuple[float, int] | None) -> ClassLimits:
    return ClassLimits(
        per_ip=Bucket(per_second=per_ip[0], burst=per_ip[1]) if per_ip else None,
        per_client=Bucket(per_second=per_client[0], burst=per_client[1]) if per_client else None,
    )


class TestRateLimits:
    @pytest.mark.parametrize(
        ("route_class", "method", "path"),
        [
            (RouteClass.OTP_REQUEST, "POST", "/api/v1/auth/otp"),
            (RouteClass.OTP_VERIFY, "POST", "/api/v1/auth/otp/verify"),
            (RouteClass.TOKEN, "POST", "/api/v1/auth/token"),
            (RouteClass.SEARCH, "GET", "/api/v1/catalog/services"),
            (RouteClass.READ, "GET", "/api/v1/catalog/stats"),
        ],
    )
    async def test_each_class_trips_per_address_and_recovers(
        self,
        start_gateway: GatewayFactory,
        recording: Upstreams,
        route_class: RouteClass,
        method: str,
        path: str,
    ) -> None:
        limits = {route_class: tight(per_ip=(4.0, 2), per_client=None)}
        async with start_gateway(rate_limits_enabled=True, rate_limits=limits) as client:
            answers = [(await client.request(method, path)).status_code for _ in range(3)]
            refused = await client.request(method, path)
            # other classes have no limit here: one class tripping leaves the others alone
            if route_class is RouteClass.READ:
                other = await client.post("/api/v1/auth/otp")
            else:
                other = await client.get("/.well-known/jwks.json")
            await asyncio.sleep(0.3)
            recovered = await client.request(method, path)
        assert answers[:2] == [200, 200]
        assert answers[2] == 429
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert other.status_code == 200
        assert recovered.status_code == 200

    async def test_writes_trip_per_caller_one_caller_does_not_starve_another(
        self, start_gateway: GatewayFactory, recording: Upstreams, token_factory: TokenFactory
    ) -> None:
        limits = {RouteClass.WRITE: tight(per_ip=None, per_client=(2.0, 2))}
        first, second = token_factory(sub="person-1"), token_factory(sub="person-2")
        async with start_gateway(rate_limits_enabled=True, rate_limits=limits) as client:
            statuses = [
                (await client.post("/api/v1/requests", headers=bearer(first))).status_code
                for _ in range(3)
            ]
            other = await client.post("/api/v1/requests", headers=bearer(second))
            await asyncio.sleep(0.6)
            again = await client.post("/api/v1/requests", headers=bearer(first))
        assert statuses == [200, 200, 429]
        assert other.status_code == 200
        assert again.status_code == 200

    async def test_the_token_endpoint_is_limited_per_oauth_client(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        limits = {RouteClass.TOKEN: tight(per_ip=None, per_client=(0.5, 1))}
        basic = {"Authorization": "Basic " + base64.b64encode(b"tax-client:secret").decode()}
        async with start_gateway(rate_limits_enabled=True, rate_limits=limits) as client:
            form = {"grant_type": "client_credentials"}
            first = await client.post("/api/v1/auth/token", data=form, headers=basic)
            second = await client.post("/api/v1/auth/token", data=form, headers=basic)
            by_form = await client.post(
                "/api/v1/auth/token", data={**form, "client_id": "police-client"}
            )
        assert [first.status_code, second.status_code, by_form.status_code] == [200, 429, 200]
        assert recording.identity.seen[0].body == b"grant_type=client_credentials"

    async def test_a_client_written_forwarded_for_does_not_buy_a_new_bucket(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        limits = {RouteClass.OTP_REQUEST: tight(per_ip=(0.1, 1), per_client=None)}
        async with start_gateway(rate_limits_enabled=True, rate_limits=limits) as client:
            statuses = [
                (
                    await client.post(
                        "/api/v1/auth/otp", headers={"X-Forwarded-For": f"198.51.100.{n}"}
                    )
                ).status_code
                for n in range(3)
            ]
        assert statuses == [200, 429, 429]


class TestBodies:
    async def test_a_declared_oversized_body_is_413_and_never_forwarded(
        self, start_gateway: GatewayFactory, recording: Upstreams, token_factory: TokenFactory
    ) -> None:
        async with start_gateway(max_body_bytes=4096) as client:
            response = await client.post(
                "/api/v1/requests", content=b"x" * 5000, headers=bearer(token_factory())
            )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert recording.requests.seen == []

    async def test_a_streamed_body_growing_past_the_limit_is_413(
        self, start_gateway: GatewayFactory, recording: Upstreams, token_factory: TokenFactory
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 1000
                await asyncio.sleep(0)

        async with start_gateway(max_body_bytes=4096) as client:
            response = await client.post(
                "/api/v1/requests", content=chunks(), headers=bearer(token_factory())
            )
        assert response.status_code == 413
        assert all(len(seen.body) <= 4096 for seen in recording.requests.seen)

    async def test_bodies_and_large_answers_cross_intact(
        self, start_gateway: GatewayFactory, recording: Upstreams, token_factory: TokenFactory
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(8):
                yield bytes([65 + index]) * 3000

        async with start_gateway() as client:
            posted = await client.post(
                "/api/v1/requests", content=chunks(), headers=bearer(token_factory())
            )
            big = await client.get("/api/v1/catalog/services/big")
            head = await client.head("/api/v1/catalog/services")
            after_head = await client.get("/api/v1/catalog/services")
        assert posted.status_code == 200
        assert recording.requests.seen[0].body == b"".join(bytes([65 + i]) * 3000 for i in range(8))
        assert big.status_code == 200
        assert big.content == b"".join(bytes([i]) * 16384 for i in range(64))
        assert head.status_code == 200
        assert head.content == b""
        assert after_head.json()["method"] == "GET"  # the kept-alive connection is still sound


class TestUpstreamFailures:
    async def test_an_upstream_that_is_down_is_503_problem_json(
        self, start_gateway: GatewayFactory, down_url: Callable[[], str]
    ) -> None:
        async with start_gateway(catalog_url=down_url()) as client:
            response = await client.get("/api/v1/catalog/services")
            ready = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "upstream_unavailable"
        assert response.json()["upstream"] == "catalog"
        assert ready.status_code == 503
        assert ready.json()["components"]["catalog"] == "unavailable"
        assert ready.json()["components"]["identity"] == "ready"

    async def test_an_upstream_that_does_not_answer_in_time_is_504(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        recording.catalog.delay_seconds = 2.0
        async with start_gateway(upstream_timeout_seconds=0.3) as client:
            started = time.monotonic()
            response = await client.get("/api/v1/catalog/services/slow")
            elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert response.json()["code"] == "upstream_timeout"
        assert elapsed < 1.5

    async def test_readyz_names_every_upstream(self, start_gateway: GatewayFactory) -> None:
        async with start_gateway() as client:
            ready = await client.get("/readyz")
            live = await client.get("/livez")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "components": {
                "catalog": "ready",
                "identity": "ready",
                "requests": "ready",
                "inquiry-broker": "ready",
            },
        }
        assert live.status_code == 200


class TestForwardedHeaders:
    SPOOFED: ClassVar[dict[str, str]] = {
        "X-Forwarded-For": "1.2.3.4",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=1.2.3.4;proto=https",
        "X-Real-IP": "1.2.3.4",
        "X-Panjereh-Subject": "platform-admin",
        "X-User-Id": "person-9",
        "X-Authenticated-User": "admin",
        "X-Client-Id": "tax",
        "X-National-Code": "0013542419",
        "X-Remote-User": "admin",
    }

    async def test_client_supplied_forwarding_and_identity_headers_never_reach_services(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        async with start_gateway() as client:
            response = await client.get("/api/v1/catalog/services", headers=self.SPOOFED)
        assert response.status_code == 200
        (seen,) = recording.catalog.seen
        names = {name.decode().lower() for name, _ in seen.headers}
        for name in self.SPOOFED:
            if name.lower() in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"):
                continue
            assert name.lower() not in names
        # the gateway's own, from the connection
        assert seen.headers_named("x-forwarded-for") == ["127.0.0.1"]
        assert seen.headers_named("x-forwarded-proto") == ["http"]
        assert seen.headers_named("x-forwarded-host") == [client.base_url.netloc.decode()]
        assert "1.2.3.4" not in json.dumps([v.decode() for _, v in seen.headers])

    async def test_a_trusted_proxys_forwarded_for_is_read_from_the_right(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        async with start_gateway(trusted_proxies=["127.0.0.0/8"]) as client:
            await client.get(
                "/api/v1/catalog/services",
                headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.7", "X-Forwarded-Proto": "https"},
            )
            response = await client.get("/api/v1/catalog/stats")
        first, second = recording.catalog.seen
        assert first.headers_named("x-forwarded-for") == ["198.51.100.7"]
        assert first.headers_named("x-forwarded-proto") == ["https"]
        assert second.headers_named("x-forwarded-for") == ["127.0.0.1"]
        assert "strict-transport-security" not in response.headers

    async def test_hop_by_hop_headers_and_those_named_in_connection_stay_here(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        async with start_gateway() as client:
            await client.get(
                "/api/v1/catalog/services",
                headers={"Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "TE": "x"},
            )
        names = {name.decode().lower() for name, _ in recording.catalog.seen[0].headers}
        assert not names & {"connection", "x-secret-hop", "te", "keep-alive"}


class TestResponseHeaders:
    async def test_a_request_id_is_echoed_and_the_trace_continues(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        async with start_gateway() as client:
            # raw HTTP: the test process's httpx is instrumented and writes its own traceparent
            status, head, _ = await raw_get(
                str(client.base_url),
                "/api/v1/catalog/services",
                {"X-Request-ID": "abc-123", "traceparent": trace},
            )
            fresh = await client.get("/api/v1/catalog/services")
            refused = await client.get("/api/v1/me")
        headers = dict(
            line.split(": ", 1) for line in head.lower().splitlines()[1:] if ": " in line
        )
        assert status == 200
        assert headers["x-request-id"] == "abc-123"
        assert headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
        assert headers["traceparent"].endswith("-01")
        seen = recording.catalog.seen[0]
        assert seen.header("x-request-id") == "abc-123"
        assert seen.header("traceparent") == headers["traceparent"]
        assert len(fresh.headers["x-request-id"]) == 32
        assert fresh.headers["traceparent"].startswith("00-")
        assert refused.headers["x-request-id"] == refused.json()["request_id"]
        assert refused.headers["traceparent"].startswith("00-")

    async def test_security_headers_on_every_answer_hsts_only_over_tls(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        async with start_gateway(trusted_proxies=["127.0.0.1/32"]) as client:
            plain = await client.get("/api/v1/catalog/services")
            tls = await client.get(
                "/api/v1/catalog/services", headers={"X-Forwarded-Proto": "https"}
            )
            problem = await client.get("/api/v1/nothing-here")
            own = await client.get("/livez")
        for response in (plain, tls, problem, own):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert "x-request-id" in response.headers
            assert "traceparent" in response.headers
        assert "strict-transport-security" not in plain.headers
        assert tls.headers["strict-transport-security"].startswith("max-age=")
        assert problem.status_code == 404
        assert problem.json()["code"] == "route_not_found"

    async def test_cors_for_configured_origins_only(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        allowed, other = "https://app.panjereh.example", "https://evil.example"
        async with start_gateway(cors_origins=[allowed]) as client:
            preflight = await client.options(
                "/api/v1/requests",
                headers={
                    "Origin": allowed,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, x-evil",
                },
            )
            refused = await client.options(
                "/api/v1/requests",
                headers={"Origin": other, "Access-Control-Request-Method": "POST"},
            )
            simple = await client.get("/api/v1/catalog/services", headers={"Origin": allowed})
            foreign = await client.get("/api/v1/catalog/services", headers={"Origin": other})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == allowed
        assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert refused.status_code == 403
        assert simple.headers["access-control-allow-origin"] == allowed
        assert "X-Request-ID" in simple.headers["access-control-expose-headers"]
        assert "access-control-allow-origin" not in foreign.headers
        assert all(seen.method != "OPTIONS" for seen in recording.requests.seen)


class TestPortal:
    async def test_without_a_portal_its_paths_answer_404_problem_json(
        self, start_gateway: GatewayFactory
    ) -> None:
        async with start_gateway() as client:
            response = await client.get("/services/passport")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "portal_not_configured"

    async def test_a_portal_that_is_down_is_503(
        self, start_gateway: GatewayFactory, down_url: Callable[[], str]
    ) -> None:
        async with start_gateway(portal_url=down_url()) as client:
            response = await client.get("/")
        assert response.status_code == 503
        assert response.json()["upstream"] == "portal"

    async def test_everything_else_is_the_portal_on_the_same_origin(
        self, start_gateway: GatewayFactory, recording: Upstreams
    ) -> None:
        async with start_gateway(portal_url=recording.urls["portal"]) as client:
            page = await client.get("/fa/services/passport", headers={"Cookie": "session=abc"})
            api = await client.get("/api/v1/catalog/services")
            own = await client.get("/livez")
        assert page.json()["upstream"] == "portal"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert recording.portal.seen[0].header("cookie") == "session=abc"
        assert api.json()["upstream"] == "catalog"
        assert own.json() == {"status": "live"}


class TestStartsWithoutUpstreams:
    async def test_the_gateway_starts_and_serves_with_every_upstream_down(
        self, start_gateway: GatewayFactory, down_url: Callable[[], str]
    ) -> None:
        down = {
            f"{name}_url": down_url()
            for name in ("catalog", "identity", "requests", "inquiry_broker")
        }
        async with start_gateway(**down) as client:
            live = await client.get("/livez")
            document = await client.get("/openapi.json")
            docs = await client.get("/docs")
        assert live.status_code == 200
        assert document.status_code == 200
        assert set(document.json()["x-panjereh-upstreams"].values()) == {"unavailable"}
        assert docs.status_code == 200
        assert "/openapi.json" in docs.text
        assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]

    async def test_a_service_that_comes_up_later_is_picked_up_on_demand(
        self,
        start_gateway: GatewayFactory,
        down_url: Callable[[], str],
        serve: Callable[..., AbstractAsyncContextManager[str]],
        upstream_app: Any,
    ) -> None:
        late = upstream_app(
            "catalog", openapi={"openapi": "3.1.0", "paths": {"/api/v1/catalog/late": {}}}
        )
        url = down_url()
        async with start_gateway(catalog_url=url, openapi_retry_seconds=0.2) as client:
            before = (await client.get("/openapi.json")).json()
            async with serve(late, port=int(url.rsplit(":", 1)[1])):
                await asyncio.sleep(0.3)
                after = (await client.get("/openapi.json")).json()
        assert before["x-panjereh-upstreams"]["catalog"] == "unavailable"
        assert after["x-panjereh-upstreams"]["catalog"] == "included"
        assert "/api/v1/catalog/late" in after["paths"]
