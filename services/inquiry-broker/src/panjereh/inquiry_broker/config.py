from __future__ import annotations

from typing import ClassVar

from panjereh.common.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PANJEREH_INQUIRY_BROKER_", extra="ignore", frozen=True
    )
    service_name: ClassVar[str] = "inquiry-broker"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/inquiry_broker"
