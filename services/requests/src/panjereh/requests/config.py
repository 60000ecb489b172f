"""Settings of the requests service (env prefix ``PANJEREH_REQUESTS_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_REQUESTS_", extra="ignore", frozen=True)
    generated_when_empty: ClassVar[frozenset[str]] = frozenset({"signing_private_key"})
    service_name: ClassVar[str] = "requests"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/requests"

    # ---------------------------------------------------------------- other services
    #: The catalog's API, read once to fill an empty card replica (events keep it current).
    catalog_url: str = "http://127.0.0.1:8001"
    #: The inquiry broker's API, where the card's inquiries are asked.
    inquiry_broker_url: str = "http://127.0.0.1:8004"
    #: Identity: where this service gets its own token (client credentials).
    identity_url: str = "http://127.0.0.1:8002"
    client_id: str = "service-requests"
    client_secret: SecretStr = SecretStr("dev-only-service-requests")
    #: Where citizens and verifiers reach the platform: the base of document verify URLs.
    public_base_url: str = "http://127.0.0.1:8000"

    # ---------------------------------------------------------------- signing
    #: PEM of the ES256 (P-256) key that signs documents and decision receipts; every replica
    #: needs the same one. Empty in dev/test: a key is generated once and kept (encrypted by
    #: nothing but the database's own access control) in the ``signing_key`` table.
    signing_private_key: SecretStr = SecretStr("")
    #: How long an issued document stays valid.
    document_valid_days: int = Field(default=365, ge=1, le=3650)

    # ---------------------------------------------------------------- processing
    #: False for API-only replicas: no orchestration, SLA or catalog-event workers here.
    run_workers: bool = True
    #: False: this replica's workers run but it joins no consumer group (catalog events,
    #: answered inquiries) and relies on polling; for tests running several apps on one broker.
    consume_events: bool = True
    #: The longest fetch wait of those consumers once no event came for a while: a card
    #: published (or retired) is in this replica's copy at most this much later after a quiet
    #: spell, and an answered inquiry's event (which only saves the wait for the next re-read)
    #: wakes its request as late. Keep the catalog's no longer than the inquiry broker's
    #: ``catalog_idle_fetch_wait_ms``: a request for a new card asks the broker about it.
    events_idle_fetch_wait_ms: int = Field(default=2000, ge=0, le=30_000)
    #: Requests one orchestration pass claims, and how many it works on at once.
    step_batch_size: int = Field(default=50, ge=1, le=1000)
    step_concurrency: int = Field(default=64, ge=1, le=1000)
    #: A claimed step not recorded within this time is claimed again (a crashed replica).
    step_lease_seconds: float = Field(default=30.0, gt=0)
    #: How often the orchestration looks for due steps when nothing woke it.
    step_poll_seconds: float = Field(default=0.5, gt=0)
    #: At idle that wait doubles after each look that finds nothing due, up to this. A request
    #: committed here, an answered inquiry and the steps this replica works bring it back at
    #: once (each step is followed at the time it left its request due); this bounds only the
    #: wait for work other replicas leave (an API-only replica's requests, a lapsed lease).
    step_idle_poll_seconds: float = Field(default=4.0, gt=0)
    #: How long one inquiry call waits at the broker for the answer (``?wait=``, at most 10).
    inquiry_wait_seconds: float = Field(default=5.0, ge=0, le=10)
    #: How many times an inquiry the broker could not take is asked again before it fails.
    inquiry_max_attempts: int = Field(default=5, ge=1, le=50)
    #: First wait before asking again after a transient failure (doubles, up to a minute), and
    #: before reading a pending inquiry again (``inquiry.inquiry.answered`` usually comes first).
    inquiry_retry_seconds: float = Field(default=2.0, gt=0, le=60)
    #: Rule evaluation: worker processes, and the time budget of one decision.
    rule_workers: int = Field(default=2, ge=1, le=16)
    rule_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    #: How often requests past their due time are looked for (SLA).
    sla_check_seconds: float = Field(default=60.0, gt=0)
