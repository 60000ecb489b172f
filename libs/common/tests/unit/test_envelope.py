"""The CloudEvents envelope, trace headers and the Kafka client settings."""

from __future__ import annotations

import json
import secrets
from typing import ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import Field, ValidationError

from panjereh.common.messaging.envelope import (
    CloudEvent,
    extract_trace_context,
    inject_trace_context,
    kafka_headers,
)
from panjereh.common.messaging.kafka import consumer_options, producer_options
from panjereh.common.settings import ServiceSettings
from panjereh.contracts.events import Event


class ThingMoved(Event):
    event_type: ClassVar[str] = "warehouse.thing.moved.v1"
    topic: ClassVar[str] = "warehouse.thing.moved"

    thing_id: str
    from_place: str = Field(alias="from")


class TestCloudEvent:
    def test_structured_json_has_the_cloudevents_attributes_and_aliased_data(self) -> None:
        envelope = CloudEvent.from_event(ThingMoved(thing_id="t1", from_place="a"), subject="t1")
        wire = json.loads(envelope.to_bytes())
        assert wire["specversion"] == "1.0"
        assert wire["type"] == "warehouse.thing.moved.v1"
        assert wire["source"] == "/panjereh/warehouse"
        assert wire["subject"] == "t1"
        assert wire["datacontenttype"] == "application/json"
        assert wire["data"] == {"thing_id": "t1", "from": "a"}
        assert wire["time"].endswith("Z") or wire["time"].endswith("+00:00")
        assert "traceparent" not in wire  # trace context travels in headers only

    def test_round_trips_and_ignores_unknown_extension_attributes(self) -> None:
        envelope = CloudEvent.from_event(ThingMoved(thing_id="t1", from_place="a"))
        wire = envelope.to_json() | {"partitionkey": "x"}
        assert CloudEvent.from_bytes(json.dumps(wire).encode()) == envelope

    def test_every_event_gets_its_own_id(self) -> None:
        event = ThingMoved(thing_id="t1", from_place="a")
        assert CloudEvent.from_event(event).id != CloudEvent.from_event(event).id

    @pytest.mark.parametrize("value", [None, b"not json", b'{"specversion": "0.3"}', b"{}"])
    def test_malformed_records_are_refused(self, value: bytes | None) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError is one
            CloudEvent.from_bytes(value)


class TestTraceHeaders:
    def test_the_writer_span_is_injected_and_extracted_again(self) -> None:
        writer = SpanContext(
            trace_id=int(secrets.token_hex(16), 16),
            span_id=int(secrets.token_hex(8), 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        with trace.use_span(NonRecordingSpan(writer)):
            headers = inject_trace_context()
        assert headers["traceparent"] == f"00-{writer.trace_id:032x}-{writer.span_id:016x}-01"
        context = extract_trace_context(kafka_headers(headers))
        extracted = trace.get_current_span(context).get_span_context()
        assert (extracted.trace_id, extracted.span_id) == (writer.trace_id, writer.span_id)
        assert extracted.is_remote

    def test_no_active_span_means_no_trace_headers(self) -> None:
        assert inject_trace_context() == {}
        context = extract_trace_context([("other", b"x")])
        assert not trace.get_current_span(context).get_span_context().is_valid


class TestKafkaSettings:
    def test_idempotence_is_on_by_default_and_off_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert ServiceSettings().kafka_idempotence is True
        monkeypatch.setenv("PANJEREH_KAFKA_IDEMPOTENCE", "false")
        assert ServiceSettings().kafka_idempotence is False

    def test_consumer_max_attempts_comes_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PANJEREH_KAFKA_CONSUMER_MAX_ATTEMPTS", "5")
        assert ServiceSettings().kafka_consumer_max_attempts == 5
        monkeypatch.setenv("PANJEREH_KAFKA_CONSUMER_MAX_ATTEMPTS", "0")
        with pytest.raises(ValidationError):
            ServiceSettings()

    def test_producers_wait_for_all_replicas_and_follow_the_idempotence_setting(self) -> None:
        options = producer_options(ServiceSettings(kafka_idempotence=False))
        assert options["acks"] == "all"
        assert options["enable_idempotence"] is False
        assert options["bootstrap_servers"] == "127.0.0.1:9092"
        assert producer_options(ServiceSettings())["enable_idempotence"] is True

    def test_consumers_never_auto_commit_and_read_from_the_start(self) -> None:
        options = consumer_options(ServiceSettings(), group_id="g")
        assert options["enable_auto_commit"] is False
        assert options["group_id"] == "g"
        assert options["auto_offset_reset"] == "earliest"
