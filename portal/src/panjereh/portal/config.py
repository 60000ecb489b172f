"""Portal settings (env prefix ``PANJEREH_PORTAL_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_PORTAL_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "portal"

    #: the gateway's public API: the portal calls nothing else (the same API a mobile app uses)
    gateway_url: str = "http://127.0.0.1:8000"
    #: seconds to wait for the API before the page says the service is unreachable
    api_timeout_seconds: float = Field(default=10.0, gt=0)
    #: a signed-in session ends after this many idle seconds, and in any case after the
    #: absolute lifetime
    session_idle_seconds: int = Field(default=30 * 60, ge=60)
    session_max_seconds: int = Field(default=12 * 3600, ge=300)
    #: sessions kept in memory at most; the least recently used go first
    session_capacity: int = Field(default=50_000, ge=10)
    #: ``Secure`` on the session cookie: ``None`` follows the scheme the gateway reports
    #: (``X-Forwarded-Proto``), so the cookie is Secure whenever the portal is behind TLS
    cookie_secure: bool | None = None
