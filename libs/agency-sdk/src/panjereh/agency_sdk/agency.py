"""An agency connected to the inquiry broker over Kafka.

``Agency`` consumes ``agency.<code>.inquiries`` with manual commits, validates every inquiry
against the registry's input schema for its type, calls the handler registered for that type,
replies on its own ``agency.<code>.replies`` (the only topic the broker accepts its answers on).

Offsets are committed when a batch is read, before it is answered: the broker counts an
inquiry's deadline from the moment its agency has read it (the group's committed offset), so an
agency that is down keeps its inquiries waiting while one that reads and does not answer in time
meets the card's time-out rule. An answer lost to a crash after the commit is not lost to the
citizen: the broker resends an overdue inquiry while attempts remain, and ignores a second reply
for the same inquiry id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from panjereh.agency_sdk.errors import InquiryNotFound, InvalidInquiry
from panjereh.agency_sdk.messages import (
    CLOUDEVENTS_CONTENT_TYPE,
    Inquiry,
    Reply,
    ReplyStatus,
    decode,
    encode_reply,
    inquiries_topic,
    replies_topic,
)

logger = logging.getLogger(__name__)

Handler = Callable[[Inquiry], Awaitable[Mapping[str, Any]]]
#: Headers copied from an inquiry to its reply so that a trace spans the agency too.
_PROPAGATED_HEADERS = frozenset({"traceparent", "tracestate"})


@dataclass
class KafkaSettings:
    """How to reach the platform's Kafka with the agency's own credentials.

    ``idempotence`` is off only for brokers lacking it (the embedded Tansu). With a
    ``SASL_*`` protocol give the agency's user and password (SCRAM-SHA-512 in the platform's
    Strimzi cluster); with ``SSL``/``SASL_SSL`` the cluster's CA file.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    idempotence: bool = True
    #: How long the broker may hold a fetch while inquiries arrive. Apache Kafka answers a
    #: held fetch as soon as an inquiry lands; a broker that does not (the embedded Tansu)
    #: adds up to this much latency per inquiry, so lower it there (the simulators use 25).
    fetch_max_wait_ms: int = 100
    #: The fetch wait once no inquiry came for ``quiet_after_seconds``: each empty poll then
    #: doubles the wait up to this, the first inquiry brings it back to ``fetch_max_wait_ms``.
    #: An idle agency costs a few fetches a second instead of one every ``fetch_max_wait_ms``.
    idle_fetch_max_wait_ms: int = 500
    quiet_after_seconds: float = 2.0
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None

    def client_options(self) -> dict[str, Any]:
        """Connection keyword arguments shared by aiokafka's consumer and producer."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in {"SSL", "SASL_SSL"}:
            options["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile)
        if self.security_protocol.startswith("SASL_"):
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return options


class Agency:
    """One agency: ``@agency.handler("type")`` functions answer its inquiries."""

    def __init__(
        self,
        code: str,
        *,
        kafka: KafkaSettings | None = None,
        input_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        concurrency: int = 64,
    ) -> None:
        self.code = code
        self.kafka = kafka or KafkaSettings()
        self.topic = inquiries_topic(code)
        self.handlers: dict[str, Handler] = {}
        self._validators = {
            name: Draft202012Validator(dict(schema))
            for name, schema in (input_schemas or {}).items()
        }
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        #: Set while connected to Kafka (its clients started), cleared when it stops.
        self.connected = asyncio.Event()
        #: Set once its consumer group has given it its partitions since it connected,
        #: cleared when it stops (tests await it; :attr:`is_ready` is a probe's "ready").
        self.ready = asyncio.Event()

    @property
    def is_ready(self) -> bool:
        """Connected and a member of its group, partitions assigned: it reads its inquiries.

        Connected alone is not enough: until the group has assigned, nobody reads the topic,
        and an inquiry sent then waits for the join (a caller with a short deadline sees none).
        """
        return self.connected.is_set() and self.ready.is_set()

    def handler(self, inquiry_type: str) -> Callable[[Handler], Handler]:
        """Register the function that answers ``inquiry_type``."""

        def register(function: Handler) -> Handler:
            self.handlers[inquiry_type] = function
            return function

        return register

    def use_input_schemas(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        """Validate inquiries against these ``{type: JSON Schema of params}`` from the registry."""
        self._validators = {
            name: Draft202012Validator(dict(schema)) for name, schema in schemas.items()
        }

    # ------------------------------------------------------------------ answering
    async def answer(self, inquiry: Inquiry) -> Reply:
        """The reply to ``inquiry``: what the handler returns, or why there is none."""
        try:
            self._validate(inquiry)
            handler = self.handlers[inquiry.type]
            async with self._slots:
                result = await handler(inquiry)
        except InquiryNotFound:
            return Reply(inquiry_id=inquiry.inquiry_id, status=ReplyStatus.NOT_FOUND)
        except InvalidInquiry as exc:
            return Reply(inquiry_id=inquiry.inquiry_id, status=ReplyStatus.ERROR, error=str(exc))
        except Exception:
            logger.exception("handler failed", extra={"inquiry_id": str(inquiry.inquiry_id)})
            return Reply(
                inquiry_id=inquiry.inquiry_id, status=ReplyStatus.ERROR, error="handler_failed"
            )
        return Reply(inquiry_id=inquiry.inquiry_id, status=ReplyStatus.OK, result=dict(result))

    def _validate(self, inquiry: Inquiry) -> None:
        if inquiry.type not in self.handlers:
            msg = "unsupported_type"
            raise InvalidInquiry(msg)
        validator = self._validators.get(inquiry.type)
        if validator is not None:
            problem = next(iter(validator.iter_errors(inquiry.params)), None)
            if problem is not None:
                # the field path only: values may be personal data
                where = ".".join(str(part) for part in problem.absolute_path) or "params"
                msg = f"invalid_input: {where}"
                raise InvalidInquiry(msg)

    # ------------------------------------------------------------------ Kafka loop
    async def run(self) -> None:
        """Consume and answer until :meth:`stop` is called (or the task is cancelled)."""
        consumer = AIOKafkaConsumer(
            self.topic,
            **self.kafka.client_options(),
            group_id=f"agency-{self.code}",
            client_id=f"agency-{self.code}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.kafka.fetch_max_wait_ms,
            # the background fetch routine's safety tick (aiokafka's default: 200 ms); every
            # event that needs it sooner wakes it at once, and at idle five wake-ups a second
            # were most of an agency's own CPU
            consumer_timeout_ms=1000,
        )
        producer = AIOKafkaProducer(
            **self.kafka.client_options(),
            client_id=f"agency-{self.code}",
            enable_idempotence=self.kafka.idempotence,
            acks="all",
            linger_ms=0,
        )
        await producer.start()
        try:
            await consumer.start()
            self.connected.set()
            try:
                await self._loop(consumer, producer)
            finally:
                self.connected.clear()
                self.ready.clear()
                await consumer.stop()
        finally:
            await producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        pacing = FetchPacing(consumer, self.kafka)
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=pacing.poll_timeout_ms, max_records=500)
            pacing.observe(got_inquiries=bool(batches))
            if consumer.assignment():
                self.ready.set()
            for partition, records in batches.items():
                await consumer.commit({partition: records[-1].offset + 1})  # read: see above
                await self.answer_records(producer, records)

    async def answer_records(self, producer: AIOKafkaProducer, records: list[Any]) -> None:
        """Answer records read from this agency's inquiries topic, concurrently, on its replies
        topic; return once every reply is acknowledged (for a host that reads the topic itself,
        :class:`~panjereh.agency_sdk.host.AgencyHost`)."""
        replies = await asyncio.gather(*(self._reply_to(record) for record in records))
        topic = replies_topic(self.code)
        deliveries = [
            await producer.send(
                topic,
                value=encode_reply(reply, agency=self.code),
                key=str(reply.inquiry_id).encode(),
                headers=headers,
            )
            for reply, headers in replies
            if reply is not None
        ]
        await asyncio.gather(*deliveries)

    async def _reply_to(self, record: Any) -> tuple[Reply | None, list[tuple[str, bytes]]]:
        headers = [
            (name, value) for name, value in (record.headers or ()) if name in _PROPAGATED_HEADERS
        ]
        headers.append(("content-type", CLOUDEVENTS_CONTENT_TYPE.encode()))
        try:
            inquiry = Inquiry.model_validate(decode(record.value).data)
        except ValidationError:
            # not an inquiry at all: nothing to answer, nobody waiting on an id we can read
            logger.warning(
                "unreadable record skipped",
                extra={"topic": record.topic, "offset": record.offset},
            )
            return None, headers
        return await self.answer(inquiry), headers


class FetchPacing:
    """A consumer's fetch wait, tight while inquiries come and long once none came lately.

    ``getmany`` waits two fetch waits (0.2 to 1 s): inquiries that arrive end it at once, so a
    longer one while idle costs no latency, only fewer turns of the loop. Once no inquiry came
    for ``quiet_after_seconds`` each empty poll doubles the fetch wait up to
    ``idle_fetch_max_wait_ms``; the first inquiry brings it back to ``fetch_max_wait_ms``.
    """

    def __init__(self, consumer: AIOKafkaConsumer, kafka: KafkaSettings) -> None:
        self._consumer = consumer
        self._tight = kafka.fetch_max_wait_ms
        self._idle = max(self._tight, kafka.idle_fetch_max_wait_ms)
        self._quiet_after = kafka.quiet_after_seconds
        self.wait_ms = self._tight
        self._last_inquiry = time.monotonic()

    @property
    def poll_timeout_ms(self) -> int:
        return max(200, min(2 * self.wait_ms, 1000))

    def observe(self, *, got_inquiries: bool) -> None:
        """After each poll: tight when inquiries came lately, backing off once quiet."""
        now = time.monotonic()
        if got_inquiries:
            self._last_inquiry = now
        quiet = now - self._last_inquiry >= self._quiet_after
        paced = min(self._idle, max(self.wait_ms * 2, 1)) if quiet else self._tight
        if paced != self.wait_ms:
            self.wait_ms = paced
            _set_fetch_wait(self._consumer, paced)


def _set_fetch_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """Set the wait of the consumer's next fetches (aiokafka reads it from its fetcher for
    every request; nothing happens if a future version keeps it elsewhere)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
        fetcher._fetch_max_wait_ms = wait_ms
