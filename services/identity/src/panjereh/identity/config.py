"""Identity settings (environment prefix ``PANJEREH_IDENTITY_``)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import Environment, ServiceSettings

#: The dev-only master secret. Contains a placeholder marker, so a production process refuses it.
DEV_SECRET_KEY = "dev-only-identity-master-key-change-me"  # noqa: S105 - refused in prod


class SmsProvider(StrEnum):
    #: dev: messages are kept in the database and shown by ``GET /api/v1/dev/sms-outbox``
    CONSOLE = "console"
    #: a Kavenegar-style "verify lookup" template API (receptor + template + tokens)
    VERIFY_LOOKUP = "verify-lookup"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_IDENTITY_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "identity"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/identity"

    #: Master secret; purpose keys (OTP hashing, token hashing, encryption at rest) are derived
    #: from it with HKDF, so one secret is mounted and none is reused for two purposes.
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)

    # ---------------------------------------------------------------- tokens
    # issuer and audience: ``jwt_issuer`` / ``jwt_audience`` of ServiceSettings, read from
    # PANJEREH_JWT_ISSUER / PANJEREH_JWT_AUDIENCE like every verifier's, so they always agree
    access_token_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    refresh_token_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=300)
    #: a refresh-token family (one login) ends after this long, however often it is rotated
    refresh_family_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    #: Production signing keys (PEM, PKCS#8 EC P-256), mounted from a secret. When
    #: ``signing_key_pem`` is unset, keys are generated on first start and kept in the database,
    #: encrypted with a key derived from ``secret_key`` (dev and test only).
    signing_key_pem: SecretStr | None = None
    next_signing_key_pem: SecretStr | None = None
    previous_signing_key_pem: SecretStr | None = None
    #: how often a process re-reads database-held keys (another replica may have rotated)
    key_cache_seconds: float = Field(default=30.0, ge=0)

    # ---------------------------------------------------------------- OTP
    otp_lifetime_seconds: int = Field(default=120, ge=30, le=600)
    otp_max_attempts: int = Field(default=5, ge=1, le=10)
    otp_resend_cooldown_seconds: int = Field(default=60, ge=0)
    otp_per_mobile_limit: int = Field(default=5, ge=1)
    otp_per_mobile_window_seconds: int = Field(default=3600, ge=1)
    #: Daily caps (L2; NIST SP 800-63B allows at most 100 consecutive failures): codes sent,
    #: and wrong codes, per mobile and per national code in a 24-hour window. Codes sent count
    #: only for pairs the mobile registry confirmed; a successful login resets the failure
    #: counts (see ``service/ratelimits.py`` for the lockout trade-off).
    otp_daily_requests_per_mobile: int = Field(default=10, ge=1)
    otp_daily_requests_per_national_code: int = Field(default=10, ge=1)
    otp_daily_failures_per_mobile: int = Field(default=20, ge=1, le=50)
    otp_daily_failures_per_national_code: int = Field(default=20, ge=1, le=50)
    otp_daily_window_seconds: int = Field(default=24 * 3600, ge=3600)
    #: unset: 30, or 1000 in dev mode, where the whole platform and its tests share 127.0.0.1
    otp_per_ip_limit: int | None = Field(default=None, ge=1)
    otp_per_ip_window_seconds: int = Field(default=600, ge=1)
    #: peers whose ``X-Forwarded-For`` is believed (the gateway); anyone else's is ignored
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")

    # ---------------------------------------------------------------- inquiry broker
    inquiry_broker_url: str = "http://127.0.0.1:8004"
    #: the broker is asked to wait up to 5 s for the agency; the HTTP call may take a bit more
    inquiry_timeout_seconds: float = Field(default=8.0, gt=0)
    #: identity's own machine-client name: tokens it mints for itself carry ``service:identity``
    service_client_id: str = "service-identity"

    # ---------------------------------------------------------------- SMS
    sms_provider: SmsProvider = SmsProvider.CONSOLE
    sms_api_url: str = "https://api.kavenegar.com"
    sms_api_key: SecretStr | None = None
    sms_otp_template: str = "panjereh-otp"
    sms_status_template: str = "panjereh-request-status"
    sms_timeout_seconds: float = Field(default=3.0, gt=0)
    #: tries inside one dispatch (quick retries); beyond that the message waits for the next
    #: background pass with exponential backoff
    sms_attempts_per_dispatch: int = Field(default=3, ge=1, le=10)
    sms_max_attempts: int = Field(default=12, ge=1)
    sms_retry_base_seconds: float = Field(default=0.2, ge=0)
    sms_poll_seconds: float = Field(default=2.0, gt=0)
    #: at idle the dispatcher's wait doubles after each pass that finds nothing, up to this; a
    #: pass that sends something and a retry falling due bring it back to ``sms_poll_seconds``
    #: (messages queued here are handed over after their commit, not polled for)
    sms_idle_poll_seconds: float = Field(default=10.0, gt=0)
    #: how long a claimed message belongs to the dispatcher sending it; one that dies meanwhile
    #: leaves it to be sent again after this (a send is cut off at half of it)
    sms_lease_seconds: float = Field(default=60.0, gt=0)

    # ---------------------------------------------------------------- notifications
    consume_status_events: bool = True
    #: The longest fetch wait of that consumer once no status change came for a while: a
    #: citizen's notice of a new status may go out a few seconds late, so an idle consumer
    #: asks the broker for records every few seconds instead of twice a second.
    status_events_idle_fetch_wait_ms: int = Field(default=5000, ge=0, le=30_000)

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @model_validator(mode="after")
    def _production_needs_real_parts(self) -> Settings:
        if self.environment is Environment.PROD:
            if self.signing_key_pem is None:
                msg = "signing_key_pem must be mounted from a secret in production"
                raise ValueError(msg)
            if self.sms_provider is SmsProvider.CONSOLE:
                msg = "the console SMS gateway is for development; choose a real provider"
                raise ValueError(msg)
        if self.sms_provider is SmsProvider.VERIFY_LOOKUP and self.sms_api_key is None:
            msg = "sms_api_key is required for the verify-lookup SMS provider"
            raise ValueError(msg)
        return self

    @property
    def otp_per_ip_limit_effective(self) -> int:
        if self.otp_per_ip_limit is not None:
            return self.otp_per_ip_limit
        return 1000 if self.environment is Environment.DEV else 30

    @property
    def dev_tools_enabled(self) -> bool:
        """Dev-only endpoints (the SMS outbox) exist only when the platform runs in dev mode."""
        return self.environment is Environment.DEV
