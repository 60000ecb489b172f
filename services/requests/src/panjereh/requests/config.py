from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_REQUESTS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "requests"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/requests"
