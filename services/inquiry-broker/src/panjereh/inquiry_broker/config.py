from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from panjereh.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PANJEREH_INQUIRY_BROKER_", extra="ignore", frozen=True
    )
    generated_when_empty: ClassVar[frozenset[str]] = frozenset(
        {"signing_private_key", "audit_chain_key"}
    )
    service_name: ClassVar[str] = "inquiry-broker"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/inquiry_broker"
    #: The answer listener's own connection (LISTEN needs a session of its own: behind a
    #: transaction-mode pooler it hears nothing). A direct, session-mode URL to the same
    #: database; empty: ``database_url``. Readiness says whether notifications really arrive.
    listen_database_url: str = ""
    #: Key of the HMAC that turns a national code into the audit log's ``subject_hash``.
    subject_hash_key: SecretStr = SecretStr("dev-only-subject-hash-key")
    #: PEM of the ES256 (P-256) private key that signs answers; every replica needs the same
    #: one. Empty in dev/test: an ephemeral key is generated per process.
    signing_private_key: SecretStr = SecretStr("")
    #: Key of the audit chain's MACs (HMAC-SHA256): held by the broker, never by the database,
    #: so whoever can write the audit table still cannot recompute the chain. Every replica
    #: needs the same one, for as long as the log is kept. Required and strong in prod; empty
    #: in dev/test: an ephemeral key is generated per process (entries it wrote check only
    #: while it runs).
    audit_chain_key: SecretStr = SecretStr("")
    #: How often a replica signs the audit chain's head (a checkpoint), if it moved.
    audit_checkpoint_interval_seconds: float = Field(default=60.0, gt=0)
    #: The login role the service runs as in production; migration 0003 makes the audit log
    #: append-only for it. Empty locally (see that migration).
    audit_append_only_role: str = Field(default="", pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$")
    #: Principals (``service:<name>``) that act for any published card's purpose.
    card_acting_services: frozenset[str] = frozenset({"service:requests"})
    #: How often a replica looks for overdue inquiries to resend or time out.
    sweep_interval_seconds: float = Field(default=0.5, gt=0)
    #: The longest the sweeper and the connector dispatcher wait between looks while nothing
    #: happens: the wait doubles after each look that finds nothing, from
    #: ``sweep_interval_seconds``; an inquiry this replica sends (or a connector call it makes)
    #: brings it back at once. Deadlines and connector retries of inquiries sent by other
    #: replicas are met at most this late while this one is idle.
    sweep_idle_interval_seconds: float = Field(default=2.0, gt=0)
    #: How long past its deadline an inquiry sent on Kafka waits while its agency has not read
    #: it (the agency's group is behind on ``agency.<code>.inquiries``: down, or behind). Not
    #: delivered is not "not answered": the deadline runs once the agency has read it. After
    #: this long the inquiry is timed out anyway, as ``undelivered``.
    undelivered_max_wait_seconds: float = Field(default=86_400.0, ge=0)
    #: How long an expired inquiry waits while the broker's replies group is behind on its
    #: agency's replies topic (a replica was down past the deadline; the answer may be there),
    #: from when that was first seen.
    reply_grace_seconds: float = Field(default=30.0, ge=0)
    #: How often an expired inquiry left waiting is looked at again (one Kafka look per agency).
    undelivered_recheck_seconds: float = Field(default=1.0, gt=0)
    #: How often a waiting caller re-reads its inquiry when no NOTIFY woke it (a safety net).
    answer_poll_interval_seconds: float = Field(default=1.0, gt=0)
    #: How long Kafka may hold an empty fetch of the agencies' replies topics. A caller pays up
    #: to this per reply on brokers that do not wake a held fetch (Tansu): keep it short there.
    #: Apache Kafka answers a held fetch as soon as a record lands: 500 costs no latency, and
    #: saves the empty fetches (the cluster's manifests set it).
    replies_fetch_max_wait_ms: int = Field(default=10, ge=0, le=500)
    #: How long Kafka may hold an empty fetch of the requests service's topics: a request's
    #: first inquiries wait for its ``submitted`` event (see below), so keep it short too.
    purposes_fetch_max_wait_ms: int = Field(default=10, ge=0, le=500)
    #: The longest fetch wait of the catalog's events once none came for a while: a card
    #: published after a quiet spell reaches the broker's copy at most this much later.
    catalog_idle_fetch_wait_ms: int = Field(default=2000, ge=0, le=30_000)
    #: How long an inquiry of a card-acting service (``service:requests``) waits for the
    #: request its tracking code names, when the broker has not heard of it yet: the requests
    #: service asks right after committing the request, maybe before its ``submitted`` event
    #: is consumed here. Bounded (at most 2 s), then refused as ``purpose_unknown``.
    purpose_wait_seconds: float = Field(default=2.0, ge=0, le=2)
    #: False for API-only replicas: no reply/catalog/purpose consumers and no sweeper here.
    run_consumers: bool = True
