"""Inquiry broker application: ``create_app()`` and its setup."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from panjereh.common.app import create_service_app
from panjereh.common.auth import install_auth
from panjereh.common.db import Database, after_commit
from panjereh.common.http import outbound_client
from panjereh.common.lifespan import Resources
from panjereh.common.logging import configure_logging
from panjereh.common.messaging.consumer import IdempotentConsumer
from panjereh.common.messaging.kafka import (
    IDLE_FETCH_MAX_WAIT_MS,
    broker_readiness_check,
    create_consumer,
    create_producer,
)
from panjereh.common.messaging.outbox import OutboxRelay
from panjereh.common.settings import Environment
from panjereh.common.workers import PeriodicWorker
from panjereh.contracts import topics
from panjereh.inquiry_broker.backlog import AgencyBacklog, KafkaBacklog
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.connectors import ConnectorDispatcher
from panjereh.inquiry_broker.handlers import (
    register_catalog_handlers,
    register_purpose_handlers,
    register_reply_handlers,
)
from panjereh.inquiry_broker.models import messaging
from panjereh.inquiry_broker.repository import deliver_answers_locally, send_notification
from panjereh.inquiry_broker.router import router
from panjereh.inquiry_broker.runtime import BrokerRuntime
from panjereh.inquiry_broker.service import audit, registry, sweeping
from panjereh.inquiry_broker.service.asking import BrokerKeys, state_of
from panjereh.inquiry_broker.signing import AnswerSigner
from panjereh.inquiry_broker.waiting import AnswerListener, libpq_dsn

logger = logging.getLogger(__name__)

#: Consumer groups: every replica joins the same ones, so each reply is handled once.
REPLIES_GROUP = "inquiry-broker.replies"
CATALOG_GROUP = "inquiry-broker.catalog"
PURPOSES_GROUP = "inquiry-broker.purposes"


def _signer(settings: Settings) -> AnswerSigner:
    pem = settings.signing_private_key.get_secret_value()
    if pem:
        return AnswerSigner.from_pem(pem)
    # dev/test only (refused in prod by Settings): answers verify until this process stops
    if settings.environment is not Environment.TEST:
        logger.warning("no signing key configured: using an ephemeral one (dev only)")
    return AnswerSigner.generate()


def _audit_chain_key(settings: Settings) -> bytes:
    key = settings.audit_chain_key.get_secret_value()
    if key:
        return key.encode()
    # dev/test only (refused in prod by Settings)
    if settings.environment is not Environment.TEST:
        logger.warning("no audit chain key configured: using an ephemeral one (dev only)")
    return secrets.token_bytes(32)


def _checkpointer(
    database: Database, relay: OutboxRelay, signer: AnswerSigner, interval: float
) -> PeriodicWorker:
    """Sign the audit chain's head when it moved (every replica; the chain lock makes one)."""

    async def checkpoint() -> None:
        async with database.transaction() as session:
            issued = await audit.issue_checkpoint(session, signer=signer, at=datetime.now(UTC))
            if issued is not None:
                after_commit(session, relay.wake)  # the AuditCheckpointed event

    return PeriodicWorker("audit-checkpoints", checkpoint, interval=interval)


def _sweeper(
    database: Database,
    relay: OutboxRelay,
    interval: float,
    backlog: KafkaBacklog,
    patience: sweeping.Patience,
    *,
    idle_interval: float,
) -> PeriodicWorker:
    """Resend overdue inquiries and time out expired ones, on every replica (SKIP LOCKED).

    Expired Kafka inquiries are decided in a second sweep, after a look at their agencies'
    topics taken outside any transaction (:mod:`panjereh.inquiry_broker.backlog`)."""

    async def sweep_with(backlogs: dict[str, AgencyBacklog] | None) -> sweeping.Swept:
        async with database.transaction() as session:
            swept = await sweeping.sweep_overdue(session, patience=patience, backlogs=backlogs)
            if swept.resent or swept.timed_out:
                after_commit(session, relay.wake)  # the resends and InquiryAnswered events
        return swept

    async def sweep() -> bool:
        swept = await sweep_with(None)
        if not swept.to_look_at:
            return swept.more
        decided = await sweep_with(await backlog.of(swept.to_look_at))
        return swept.more or decided.more

    return PeriodicWorker("sweeper", sweep, interval=interval, idle_interval=idle_interval)


class RepliesSubscriber:
    """Starts the replies consumer once the registry can say which topics to read.

    The broker must start (and say on ``/readyz`` that its database is down) even when the
    database is unreachable; the consumer then starts as soon as the registry answers.
    """

    RETRY_SECONDS = 2.0

    def __init__(
        self, database: Database, build: Callable[[Sequence[str]], IdempotentConsumer]
    ) -> None:
        self._database = database
        self._build = build
        self._consumer: IdempotentConsumer | None = None
        self._worker = PeriodicWorker(
            "replies-subscriber", self._subscribe, interval=self.RETRY_SECONDS
        )

    async def _subscribe(self) -> None:
        if self._consumer is not None:
            return
        async with self._database.transaction() as session:
            reply_topics = await registry.reply_topics(session)
        consumer = self._build(reply_topics)
        await consumer.start()
        self._consumer = consumer

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    def expect_replies(self) -> None:
        """An inquiry was just sent: replies are due, fetch with the tight wait again."""
        if self._consumer is not None:
            self._consumer.expect_records()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    def consumer_factory(
        fetch_max_wait_ms: int,
    ) -> Callable[[Sequence[str], str], AIOKafkaConsumer]:
        # the idempotent consumer subscribes to its topics itself
        def build(_topics: Sequence[str], group: str) -> AIOKafkaConsumer:
            return create_consumer(settings, group_id=group, fetch_max_wait_ms=fetch_max_wait_ms)

        return build

    def idempotent_consumer(
        name: str,
        subscribed: Sequence[str],
        database: Database,
        fetch_max_wait_ms: int,
        idle_fetch_wait_ms: int = IDLE_FETCH_MAX_WAIT_MS,
    ) -> IdempotentConsumer:
        return IdempotentConsumer(
            name=name,
            topics=subscribed,
            database=database,
            inbox=messaging.inbox,
            consumer_factory=consumer_factory(fetch_max_wait_ms),
            producer_factory=lambda: create_producer(settings),
            max_attempts=settings.kafka_consumer_max_attempts,
            idle_fetch_wait_ms=idle_fetch_wait_ms,
        )

    async def setup(app: FastAPI, resources: Resources) -> None:
        """Open in dependency order; the kernel closes everything in reverse at shutdown."""
        database = resources.database(settings)
        resources.ready_when("broker", broker_readiness_check(settings))
        await resources.enter(install_auth(app, settings))
        # the chain key: on app.state for this app's endpoints and handlers, and installed for
        # the appends of the asking flow
        app.state.audit_chain_key = _audit_chain_key(settings)
        audit.use_chain_key(app.state.audit_chain_key)
        keys = BrokerKeys(
            signer=_signer(settings),
            subject_hash_key=settings.subject_hash_key.get_secret_value().encode(),
            card_acting_services=settings.card_acting_services,
        )

        async def notify(channel: str, payload: str) -> None:
            # the way every answer's NOTIFY goes: the pooled database
            async with database.transaction() as session:
                await send_notification(session, channel, payload)

        listener = await resources.start(
            AnswerListener(
                libpq_dsn(settings.listen_database_url or settings.database_url),
                poll_interval=settings.answer_poll_interval_seconds,
                notify=notify,
            )
        )
        resources.ready_when("answer_listener", listener.check)
        # an answer this process records reaches its own waiters without a re-read
        deliver_answers_locally(
            database, lambda inquiry: listener.handover(str(inquiry.id), state_of(inquiry))
        )
        relay = await resources.start(
            OutboxRelay(
                database=database,
                table=messaging.outbox,
                producer_factory=lambda: create_producer(settings, linger_ms=0),
            )
        )
        connector_http = await resources.enter(outbound_client(follow_redirects=False))
        connectors = ConnectorDispatcher(
            database=database,
            signer=keys.signer,
            client=connector_http,
            poll_interval=settings.sweep_interval_seconds,
            idle_poll_interval=settings.sweep_idle_interval_seconds,
        )
        # each agency's own replies topic, as the registry stands when the database first
        # answers: an agency new to the registry is consumed after the next rollout (its topic
        # and ACLs come with it)

        def replies_on(reply_topics: Sequence[str]) -> IdempotentConsumer:
            replies = idempotent_consumer(
                REPLIES_GROUP, reply_topics, database, settings.replies_fetch_max_wait_ms
            )
            register_reply_handlers(
                replies, signer=keys.signer, chain_key=app.state.audit_chain_key
            )
            return replies

        subscriber = RepliesSubscriber(database, replies_on)
        tightened_on_send: list[PeriodicWorker] = []

        def expect_replies() -> None:
            # an inquiry just went out on Kafka: its reply, maybe its deadline, are due soon
            subscriber.expect_replies()
            for worker in tightened_on_send:
                worker.tighten()

        app.state.broker = BrokerRuntime(
            database=database,
            keys=keys,
            relay=relay,
            listener=listener,
            connectors=connectors,
            purpose_wait_seconds=settings.purpose_wait_seconds,
            expect_replies=expect_replies if settings.run_consumers else None,
        )
        # every replica, API-only ones too: it consumes nothing, and one signs each head
        await resources.start(
            _checkpointer(database, relay, keys.signer, settings.audit_checkpoint_interval_seconds)
        )
        if not settings.run_consumers:
            return  # an API-only replica: another one consumes, sweeps and calls connectors
        await resources.start(subscriber)
        catalog = idempotent_consumer(
            CATALOG_GROUP,
            [topics.CATALOG_SERVICE_PUBLISHED, topics.CATALOG_SERVICE_RETIRED],
            database,
            500,
            settings.catalog_idle_fetch_wait_ms,
        )
        register_catalog_handlers(catalog)
        await resources.start(catalog)
        live_purposes = idempotent_consumer(
            PURPOSES_GROUP,
            [topics.REQUESTS_SUBMITTED, topics.REQUESTS_STATUS_CHANGED],
            database,
            settings.purposes_fetch_max_wait_ms,
        )
        register_purpose_handlers(live_purposes, subject_hash_key=keys.subject_hash_key)
        await resources.start(live_purposes)
        await resources.start(connectors)
        backlog = await resources.start(KafkaBacklog(settings, replies_group=REPLIES_GROUP))
        patience = sweeping.Patience(
            undelivered_max_wait=timedelta(seconds=settings.undelivered_max_wait_seconds),
            reply_grace=timedelta(seconds=settings.reply_grace_seconds),
            recheck=timedelta(seconds=settings.undelivered_recheck_seconds),
        )
        sweeper = await resources.start(
            _sweeper(
                database,
                relay,
                settings.sweep_interval_seconds,
                backlog,
                patience,
                idle_interval=settings.sweep_idle_interval_seconds,
            )
        )
        tightened_on_send.append(sweeper)

    configure_logging(settings.service_name, settings.log_level)
    return create_service_app(
        title="Panjereh inquiry broker", settings=settings, setup=setup, routers=[router]
    )
