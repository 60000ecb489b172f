"""Typed settings shared by every process.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix``
(``PANJEREH_CATALOG_`` ...). Platform-wide values (run mode, Kafka bootstrap servers) are read
without a prefix so one environment variable configures every process.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_MARKERS = ("changeme", "change-me", "placeholder", "secret", "dev-only")
#: A production secret's floor: long enough, and varied enough that it is not a pattern
#: (a generator's 32 random characters pass; ``abc``, ``aaaa...``, ``0123456789...`` do not).
MIN_SECRET_LENGTH = 24
MIN_SECRET_DISTINCT_CHARACTERS = 12


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``model_config`` with their env prefix."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    #: Name used in logs, traces and event ``source``; subclasses override the default.
    service_name: ClassVar[str] = "panjereh"
    #: Secret fields that may stay empty in dev and test (the service then generates or keeps
    #: its own, e.g. a signing key) but must be set in production. A key's PEM is not checked
    #: for placeholder words: base64 may spell anything.
    generated_when_empty: ClassVar[frozenset[str]] = frozenset()

    #: No default on purpose: a process that was not told where it runs must not guess dev
    #: (the dev SMS outbox, dev secrets). ``make run`` and the test plugin set it.
    environment: Environment = Field(
        default=None,  # type: ignore[assignment]  # refused below with one clear line
        validation_alias=AliasChoices("PANJEREH_ENV", "environment"),
        validate_default=False,
    )
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    #: On for Apache Kafka; off for the embedded Tansu broker, which rejects InitProducerId.
    #: Correctness never depends on it: the outbox and the consumers' inbox absorb duplicates.
    kafka_idempotence: bool = Field(
        default=True,
        validation_alias=AliasChoices("PANJEREH_KAFKA_IDEMPOTENCE", "kafka_idempotence"),
    )
    #: How many times a consumer tries a record before parking it on ``<topic>.dlq``.
    kafka_consumer_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        validation_alias=AliasChoices(
            "PANJEREH_KAFKA_CONSUMER_MAX_ATTEMPTS", "kafka_consumer_max_attempts"
        ),
    )
    # Connection security for a real cluster (Strimzi: SASL_SSL + SCRAM-SHA-512 with the
    # cluster CA); the embedded broker needs none of it.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"),
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism"),
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username"),
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password"),
    )
    kafka_ssl_cafile: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile"),
    )
    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("PANJEREH_LOG_LEVEL", "log_level")
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Access-token verification: every service trusts identity's keys, so these are read
    # without the service prefix.
    jwks_url: str = Field(
        default="http://127.0.0.1:8002/.well-known/jwks.json",
        validation_alias=AliasChoices("PANJEREH_JWKS_URL", "jwks_url"),
    )
    jwt_issuer: str = Field(
        default="panjereh-identity",
        validation_alias=AliasChoices("PANJEREH_JWT_ISSUER", "jwt_issuer"),
    )
    jwt_audience: str = Field(
        default="panjereh",
        validation_alias=AliasChoices("PANJEREH_JWT_AUDIENCE", "jwt_audience"),
    )
    #: How long fetched signing keys are trusted before they are fetched again.
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    #: Fewest seconds between two fetches caused by an unknown ``kid``.
    jwks_refetch_interval_seconds: float = Field(default=30.0, ge=0)
    #: How long known keys stay trusted when identity cannot be reached to refresh them.
    jwks_max_stale_seconds: float = Field(default=3600.0, gt=0)
    #: Identity's list of ended login sessions; empty: beside ``jwks_url``
    #: (``/.well-known/revoked-sessions``). A token of an ended session is refused.
    revoked_sessions_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PANJEREH_REVOKED_SESSIONS_URL", "revoked_sessions_url"),
    )
    #: How often that list is polled (at most): a logout reaches every service within this.
    revocation_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    #: Clock skew tolerated on ``exp`` and ``nbf``.
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)

    #: OTLP/HTTP collector base URL; spans are exported only when this is set.
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"),
    )
    #: A span per SQL statement under the request's span. Off by default in every mode: the
    #: request, outgoing call and Kafka spans already show where an operation's time goes, and
    #: a span per statement costs more CPU than a statement's round trip on the hot paths.
    #: Turned on for a process while diagnosing a slow query path.
    trace_statements: bool = Field(
        default=False,
        validation_alias=AliasChoices("PANJEREH_TRACE_STATEMENTS", "trace_statements"),
    )

    @property
    def is_dev(self) -> bool:
        return self.environment is Environment.DEV

    @model_validator(mode="after")
    def _environment_is_given(self) -> ServiceSettings:
        if self.environment is None:
            msg = "PANJEREH_ENV is not set: set it to dev, test or prod"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> ServiceSettings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            msg = (
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServiceSettings:
        """In every mode but dev, a placeholder or weak secret stops the process.

        A test deployment holds data worth protecting too, so only dev (``make run``, the test
        plugin) runs with the dev defaults. A field in ``generated_when_empty`` may stay empty
        outside production (the service then generates its own); when it is set, it is checked
        like any other, unless it is a key's PEM (base64 may spell anything).
        """
        if self.environment in (None, Environment.DEV):
            return self
        mode = self.environment.value
        for name, value in self._secret_values().items():
            if name in self.generated_when_empty:
                if not value:
                    if self.environment is Environment.PROD:
                        msg = f"{name} must be set in production (shared by every replica)"
                        raise ValueError(msg)
                    continue
                if value.lstrip().startswith("-----BEGIN "):
                    continue
            lowered = value.lower()
            if not value or any(marker in lowered for marker in PLACEHOLDER_MARKERS):
                msg = f"{name} holds a placeholder value; set a real secret ({mode} mode)"
                raise ValueError(msg)
            if len(value) < MIN_SECRET_LENGTH or len(set(value)) < MIN_SECRET_DISTINCT_CHARACTERS:
                msg = (
                    f"{name} is too weak for {mode} mode: use at least "
                    f"{MIN_SECRET_LENGTH} random characters"
                )
                raise ValueError(msg)
        return self

    def _secret_values(self) -> dict[str, str]:
        values: dict[str, Any] = {name: getattr(self, name) for name in type(self).model_fields}
        return {
            name: value.get_secret_value()
            for name, value in values.items()
            if isinstance(value, SecretStr)
        }
