from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_GATEWAY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "gateway"

    catalog_url: str = "http://127.0.0.1:8001"
    identity_url: str = "http://127.0.0.1:8002"
    requests_url: str = "http://127.0.0.1:8003"
    inquiry_broker_url: str = "http://127.0.0.1:8004"
    upstream_timeout_seconds: float = Field(default=30.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(default=2.0, gt=0)

    def upstreams(self) -> dict[str, str]:
        return {
            "catalog": self.catalog_url,
            "identity": self.identity_url,
            "requests": self.requests_url,
            "inquiry-broker": self.inquiry_broker_url,
        }
