"""Gateway settings: upstreams, the route and access tables, edge limits and headers."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import ServiceSettings

#: The public contract's routing table (docs/api.md, "Routing at the gateway"): path prefix →
#: upstream. A prefix ending in "/" matches below it; one without matches itself and below.
CONTRACT_ROUTES: dict[str, str] = {
    "/api/v1/catalog/": "catalog",
    "/api/v1/auth/": "identity",
    "/api/v1/me/data-access": "inquiry-broker",
    "/api/v1/me": "identity",
    "/api/v1/admin/": "identity",
    "/api/v1/dev/": "identity",
    "/.well-known/": "identity",
    "/api/v1/requests": "requests",
    "/api/v1/agency/": "requests",
    "/api/v1/verify/": "requests",
    "/api/v1/inquiries": "inquiry-broker",
    "/api/v1/inquiry-types": "inquiry-broker",
    "/api/v1/audit/": "inquiry-broker",
}

#: Routes a caller may use without an access token, as ``METHOD /path``: ``*`` is one path
#: segment, a trailing ``/**`` anything below; ``GET`` also admits ``HEAD``. Everything else
#: under the API prefixes needs a valid token at the edge (the portal's paths never do: it
#: keeps its own sessions).
CONTRACT_PUBLIC_ROUTES: tuple[str, ...] = (
    "GET /api/v1/catalog/services",
    "GET /api/v1/catalog/services/*",
    "GET /api/v1/catalog/services/*/versions",
    "GET /api/v1/catalog/services/*/versions/*",
    "GET /api/v1/catalog/agencies",
    "GET /api/v1/catalog/agencies/*",
    "GET /api/v1/catalog/stats",
    "POST /api/v1/auth/otp",
    "POST /api/v1/auth/otp/verify",
    "POST /api/v1/auth/token",
    "GET /.well-known/**",
    "GET /api/v1/dev/sms-outbox",
    "GET /api/v1/requests/stats",
    "GET /api/v1/verify/**",
    "POST /api/v1/verify/*",
    "GET /api/v1/inquiry-types/keys",
    "GET /api/v1/audit/checkpoints/latest",
)


class RouteClass(StrEnum):
    """What a request costs the platform, for rate limiting."""

    OTP_REQUEST = "otp_request"
    OTP_VERIFY = "otp_verify"
    TOKEN = "token"  # noqa: S105 - the OAuth token endpoint, not a secret
    SEARCH = "search"
    WRITE = "write"
    READ = "read"


class Bucket(BaseModel):
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class ClassLimits(BaseModel):
    """The buckets of one route class: per client address and per caller (token subject or
    OAuth client id); ``None`` means no such limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_ip: Bucket | None = None
    per_client: Bucket | None = None


def _limits(ip: tuple[float, int] | None, client: tuple[float, int] | None) -> ClassLimits:
    return ClassLimits(
        per_ip=Bucket(per_second=ip[0], burst=ip[1]) if ip else None,
        per_client=Bucket(per_second=client[0], burst=client[1]) if client else None,
    )


#: Per replica (docs/gateway.md, "Several replicas"). OTP and token endpoints are the ones an
#: attacker guesses or floods; identity keeps its own per-mobile and per-IP OTP limits behind.
DEFAULT_LIMITS: dict[RouteClass, ClassLimits] = {
    RouteClass.OTP_REQUEST: _limits(ip=(0.1, 10), client=None),
    RouteClass.OTP_VERIFY: _limits(ip=(0.2, 10), client=None),
    RouteClass.TOKEN: _limits(ip=(1.0, 20), client=(0.5, 10)),
    RouteClass.SEARCH: _limits(ip=(20.0, 40), client=(10.0, 20)),
    RouteClass.WRITE: _limits(ip=(5.0, 20), client=(2.0, 10)),
    RouteClass.READ: _limits(ip=(50.0, 100), client=(20.0, 50)),
}

#: A strict policy for JSON answers: nothing in them is ever meant to run or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: The portal is server-rendered and same-origin: its own scripts, styles and images only.
PORTAL_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_GATEWAY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "gateway"

    # ---------------------------------------------------------------- upstreams
    catalog_url: str = "http://127.0.0.1:8001"
    identity_url: str = "http://127.0.0.1:8002"
    requests_url: str = "http://127.0.0.1:8003"
    inquiry_broker_url: str = "http://127.0.0.1:8004"
    #: the web portal: every path that is neither the gateway's own nor an API prefix goes
    #: there. Unset until the portal is deployed: those paths then answer 404 problem+json.
    portal_url: str | None = None
    #: time to connect, and to wait for a free connection when all are busy (then 503)
    upstream_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    #: time to wait for an answer, and between two pieces of its body (then 504)
    upstream_timeout_seconds: float = Field(default=30.0, gt=0)
    upstream_max_connections: int = Field(default=256, ge=1, le=10_000)
    #: idle connections are dropped after this; keep it below the upstreams' own keep-alive
    #: (uvicorn: 5 s) so a request never lands on a connection the upstream is closing
    upstream_keepalive_seconds: float = Field(default=4.0, gt=0)

    # ---------------------------------------------------------------- routing and access
    routes: dict[str, str] = Field(default_factory=lambda: dict(CONTRACT_ROUTES))
    public_routes: tuple[str, ...] = CONTRACT_PUBLIC_ROUTES

    # ---------------------------------------------------------------- client address
    #: peers (addresses or networks) whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are
    #: believed: the ingress controller. Anyone else's are discarded; the client is the peer.
    trusted_proxies: tuple[str, ...] = ()

    # ---------------------------------------------------------------- edge authentication
    #: verified tokens are remembered this long (never past their ``exp``)
    token_cache_seconds: float = Field(default=60.0, ge=0)
    token_cache_size: int = Field(default=10_000, ge=0)

    # ---------------------------------------------------------------- rate limits
    rate_limits_enabled: bool = True
    rate_limits: dict[RouteClass, ClassLimits] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))
    #: per-IP buckets are this many times larger; unset: 1, or 100 in dev mode, where the
    #: whole platform, its tests and every developer share 127.0.0.1
    rate_limit_ip_factor: float | None = Field(default=None, gt=0)

    # ---------------------------------------------------------------- browser-facing headers
    #: origins allowed to call the API from a browser (CORS); the portal is same-origin
    cors_origins: tuple[str, ...] = ()
    cors_max_age_seconds: int = Field(default=600, ge=0)
    #: ``Strict-Transport-Security`` max-age on answers over HTTPS; 0 sends none
    hsts_seconds: int = Field(default=63_072_000, ge=0)
    api_content_security_policy: str = API_CSP
    portal_content_security_policy: str = PORTAL_CSP

    # ---------------------------------------------------------------- OpenAPI and logs
    #: how often the services' OpenAPI documents are fetched again
    openapi_refresh_seconds: float = Field(default=300.0, gt=0)
    #: while a service's document is missing: fewest seconds between two fetches, whether on
    #: the timer or asked for by a request to /openapi.json
    openapi_retry_seconds: float = Field(default=5.0, gt=0)
    #: one JSON line per request (method, route, status, latency, upstream)
    access_log: bool = True

    # ---------------------------------------------------------------- metrics
    #: port of ``/metrics`` (Prometheus text), never the public port: unset serves none, 0
    #: any free port (tests). The manifests use 9090, which the ingress does not reach.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - inside the pod; the NetworkPolicy guards it

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _origins_are_exact(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                msg = f"CORS origins are exact scheme://host[:port] values, not {origin!r}"
                raise ValueError(msg)
        return tuple(origin.rstrip("/") for origin in value)

    @model_validator(mode="after")
    def _routes_name_upstreams(self) -> Settings:
        known = self.upstreams()
        for prefix, upstream in self.routes.items():
            if not prefix.startswith(("/api/", "/.well-known/")):
                msg = f"route {prefix!r}: only /api/... and /.well-known/... are routed"
                raise ValueError(msg)
            if upstream not in known:
                msg = f"route {prefix!r} names {upstream!r}, which is not an upstream"
                raise ValueError(msg)
        return self

    @property
    def ip_factor(self) -> float:
        if self.rate_limit_ip_factor is not None:
            return self.rate_limit_ip_factor
        return 100.0 if self.is_dev else 1.0

    def upstreams(self) -> dict[str, str]:
        """The services behind the API prefixes (the portal is not one of them)."""
        return {
            "catalog": self.catalog_url,
            "identity": self.identity_url,
            "requests": self.requests_url,
            "inquiry-broker": self.inquiry_broker_url,
        }
