from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_CATALOG_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "catalog"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/catalog"
    #: The organisation whose catalog authority approves cards (stored on every version:
    #: which body approves has changed over the years, so it is data, not code).
    approving_organisation: str = "administrative-and-recruitment-affairs-organization"
    #: An agency counts as connected when it was active within this many minutes.
    agency_connected_window_minutes: int = Field(default=24 * 60, ge=1)
    #: Consume the inquiry broker's ``inquiry.agency.active`` (the agencies' connection status).
    #: False only where several catalogs share one broker but not one database (tests).
    consume_agency_activity: bool = True
    #: The longest fetch wait of that consumer once no announcement came for a while (an
    #: agency is announced at most once a minute): seconds late costs nothing, and an idle
    #: consumer asks the broker for records every few seconds instead of twice a second.
    agency_activity_idle_fetch_wait_ms: int = Field(default=5000, ge=0, le=30_000)
