"""The AsyncAPI 3.0 document of Panjereh's Kafka topics, generated from the contracts.

Written to ``libs/contracts/asyncapi.json``; regenerate after changing a contract:

    python -m panjereh.contracts.asyncapi            # write
    python -m panjereh.contracts.asyncapi --check    # exit 1 when the committed one is stale

The document is written from the platform's point of view: ``send`` for what Panjereh
publishes, ``receive`` for what agencies send in (``agency.<agency>.replies``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from panjereh.contracts.events import Event
from panjereh.contracts.registry import ALL_EVENTS, PRODUCERS
from panjereh.contracts.snapshot import CONTRACTS_ROOT

ASYNCAPI_PATH = CONTRACTS_ROOT / "asyncapi.json"
REF_TEMPLATE = "#/components/schemas/{model}"
TRACEPARENT_PATTERN = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

#: Contracts Panjereh receives rather than sends.
RECEIVED_BY_PLATFORM = {"agency"}


def _channel_id(topic: str) -> str:
    return re.sub(
        r"[^A-Za-z0-9]+(.)", lambda m: m.group(1).upper(), topic.replace("{", "").replace("}", "")
    )


def _envelope_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "CloudEvents 1.0, structured JSON mode; the record key is the aggregate id.",
        "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "data"],
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": {"type": "string", "description": "Unique per event; consumers dedupe on it."},
            "source": {"type": "string", "description": "/panjereh/<producer>"},
            "type": {"type": "string", "description": "<producer>.<aggregate>.<event>.v1"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "description": "The aggregate id (the record key)."},
            "datacontenttype": {"type": "string", "const": "application/json"},
            "data": {"type": "object"},
        },
    }


def _payload(event: type[Event], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = event.model_json_schema(by_alias=True, ref_template=REF_TEMPLATE)
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas[event.__name__] = schema
    return {
        "allOf": [
            {"$ref": "#/components/schemas/CloudEvent"},
            {
                "type": "object",
                "properties": {
                    "type": {"const": event.event_type},
                    "data": {"$ref": f"#/components/schemas/{event.__name__}"},
                },
            },
        ]
    }


def build() -> dict[str, Any]:
    schemas: dict[str, Any] = {"CloudEvent": _envelope_schema()}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event in sorted(ALL_EVENTS, key=lambda event: event.topic):
        channel_id = _channel_id(event.topic)
        message_name = event.__name__
        messages[message_name] = {
            "name": message_name,
            "title": event.event_type,
            "summary": (event.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/cloudevents+json",
            "headers": {"$ref": "#/components/schemas/TraceHeaders"},
            "payload": _payload(event, schemas),
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "The aggregate id."},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        channel = channels.setdefault(
            channel_id,
            {"address": event.topic, "messages": {}},
        )
        channel["messages"][message_name] = {"$ref": f"#/components/messages/{message_name}"}
        if "{agency}" in event.topic:
            channel["parameters"] = {
                "agency": {"description": "The agency code, e.g. civil-registry."}
            }
        producer = PRODUCERS[event]
        action = "receive" if producer in RECEIVED_BY_PLATFORM else "send"
        operations[f"{action}{message_name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{producer} → {event.topic}",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_name}"}],
        }
    schemas["TraceHeaders"] = {
        "type": "object",
        "description": "W3C Trace Context, carried in Kafka record headers.",
        "properties": {
            "traceparent": {"type": "string", "pattern": TRACEPARENT_PATTERN},
            "tracestate": {"type": "string"},
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Panjereh events",
            "version": "1.0.0",
            "description": (
                "Kafka topics of the Panjereh single window. Every record is a CloudEvents 1.0 "
                "structured JSON event; consumers ignore unknown fields; breaking changes get "
                "a new .v2 type. A consumer that cannot handle a record parks it on "
                "<topic>.dlq."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local stack's embedded broker (make run).",
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": dict(sorted(schemas.items())),
        },
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate libs/contracts/asyncapi.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    current = render(build())
    if args.check:
        if not ASYNCAPI_PATH.exists() or ASYNCAPI_PATH.read_text(encoding="utf-8") != current:
            sys.stderr.write("asyncapi.json is stale: run python -m panjereh.contracts.asyncapi\n")
            return 1
        return 0
    ASYNCAPI_PATH.write_text(current, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
