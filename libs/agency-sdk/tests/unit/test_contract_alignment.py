"""The SDK speaks the platform's contracts without importing the platform's kernel."""

from __future__ import annotations

import uuid

from panjereh.agency_sdk.messages import (
    INQUIRY_REPLIED_TYPE,
    INQUIRY_REQUESTED_TYPE,
    Inquiry,
    Reply,
    ReplyStatus,
    encode_reply,
    inquiries_topic,
    replies_topic,
)
from panjereh.contracts import topics
from panjereh.contracts.inquiry import InquiryPurpose, InquiryReply, InquiryToAgency


def test_topics_and_event_types_match_the_contracts() -> None:
    assert replies_topic("tax") == topics.agency_replies("tax")
    assert inquiries_topic("tax") == topics.agency_inquiries("tax")
    assert InquiryToAgency.event_type == INQUIRY_REQUESTED_TYPE
    assert InquiryReply.event_type == INQUIRY_REPLIED_TYPE


def test_an_inquiry_from_the_contract_parses_and_a_reply_parses_back() -> None:
    sent = InquiryToAgency(
        inquiry_id=str(uuid.uuid4()),
        type="tax.clearance",
        subject="0499370899",
        purpose=InquiryPurpose(service_code="S", tracking_code="T", legal_basis="L"),
    )
    inquiry = Inquiry.model_validate(sent.model_dump(mode="json"))
    assert str(inquiry.inquiry_id) == sent.inquiry_id
    reply = Reply(inquiry_id=inquiry.inquiry_id, status=ReplyStatus.OK, result={"a": 1})
    from panjereh.agency_sdk.messages import decode  # noqa: PLC0415

    event = decode(encode_reply(reply, agency="tax"))
    parsed = InquiryReply.parse_data(event.data)
    assert (parsed.inquiry_id, parsed.status, parsed.result) == (sent.inquiry_id, "ok", {"a": 1})
    assert event.type == InquiryReply.event_type
    assert event.source == "agency/tax"
