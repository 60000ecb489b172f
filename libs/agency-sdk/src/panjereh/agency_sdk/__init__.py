"""Panjereh agency SDK: answer the inquiries the broker routes to your agency.

See the package README for a complete agency in about twenty lines.
"""

from panjereh.agency_sdk.agency import Agency, KafkaSettings
from panjereh.agency_sdk.errors import InquiryNotFound, InvalidInquiry
from panjereh.agency_sdk.host import AgencyHost
from panjereh.agency_sdk.messages import Inquiry, Purpose, Reply, ReplyStatus
from panjereh.agency_sdk.registry import fetch_input_schemas

__all__ = [
    "Agency",
    "AgencyHost",
    "Inquiry",
    "InquiryNotFound",
    "InvalidInquiry",
    "KafkaSettings",
    "Purpose",
    "Reply",
    "ReplyStatus",
    "fetch_input_schemas",
]
