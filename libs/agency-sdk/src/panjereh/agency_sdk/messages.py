"""The two agency-facing messages, as they travel on Kafka (CloudEvents 1.0, structured JSON).

An agency receives ``{inquiry_id, type, subject, params, purpose}`` on
``agency.<code>.inquiries`` and answers ``{inquiry_id, status: ok|not_found|error, result}`` on
its own ``agency.<code>.replies``, keyed by the inquiry id. Kept here, free of the platform's
internals, so that an agency needs nothing but this package to connect.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

INQUIRY_REQUESTED_TYPE = "inquiry.inquiry.requested.v1"
INQUIRY_REPLIED_TYPE = "agency.inquiry.replied.v1"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


def inquiries_topic(agency: str) -> str:
    """The topic on which ``agency`` receives its inquiries."""
    return f"agency.{agency}.inquiries"


def replies_topic(agency: str) -> str:
    """The topic on which ``agency`` answers; only it may write there (Kafka ACL), and the
    broker accepts an answer only on the topic of the agency it asked."""
    return f"agency.{agency}.replies"


class Purpose(BaseModel):
    """Why the data is asked for; recorded in the audit log and shown to the citizen."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service_code: str | None = None
    tracking_code: str | None = None
    legal_basis: str | None = None


class Inquiry(BaseModel):
    """One question an agency is asked to answer."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    inquiry_id: uuid.UUID
    type: str
    subject: str
    params: dict[str, Any] = Field(default_factory=dict)
    purpose: Purpose = Field(default_factory=Purpose)


class ReplyStatus(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    ERROR = "error"


class Reply(BaseModel):
    """An agency's answer to one inquiry."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    inquiry_id: uuid.UUID
    status: ReplyStatus
    result: dict[str, Any] | None = None
    error: str | None = None


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 structured-mode envelope (unknown attributes are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: dict[str, Any]


def decode(value: bytes) -> CloudEvent:
    return CloudEvent.model_validate_json(value)


def encode_reply(reply: Reply, *, agency: str) -> bytes:
    """The record value of ``reply``: a CloudEvent whose ``source`` names the agency."""
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source=f"agency/{agency}",
        type=INQUIRY_REPLIED_TYPE,
        time=datetime.now(UTC),
        subject=str(reply.inquiry_id),
        data=reply.model_dump(mode="json", exclude_none=True),
    )
    return json.dumps(event.model_dump(mode="json"), ensure_ascii=False).encode()


def inquiry_requested_event(
    inquiry_id: uuid.UUID | str,
    inquiry_type: str,
    subject: str,
    params: dict[str, Any] | None = None,
    *,
    service_code: str = "S1",
    tracking_code: str = "T1",
) -> bytes:
    """An inquiry as the broker puts it on ``agency.<code>.inquiries``, for an agency's tests."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "inquiry-broker",
            "type": INQUIRY_REQUESTED_TYPE,
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": {
                "inquiry_id": str(inquiry_id),
                "type": inquiry_type,
                "subject": subject,
                "params": params or {},
                "purpose": {"service_code": service_code, "tracking_code": tracking_code},
            },
        }
    ).encode()
