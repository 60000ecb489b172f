"""The inquiry broker's own metrics, beside the kernel's (same registry, same ``/metrics``).

Labels are the registry's inquiry types and agencies and closed vocabularies of statuses and
reasons: never a subject, an inquiry id or a tracking code.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from panjereh.common.metrics import LATENCY_BUCKETS

INQUIRIES_FINISHED = Counter(
    "panjereh_inquiries_total",
    "Inquiries that became final, by type, provider agency and status "
    "(answered, not_found, failed, timed_out; cached answers count as answered)",
    ["type", "agency", "status"],
)
INQUIRY_LATENCY = Histogram(
    "panjereh_inquiry_duration_seconds",
    "From asking to a final answer, by type and provider agency",
    ["type", "agency"],
    buckets=LATENCY_BUCKETS,
)
INQUIRY_DENIALS = Counter(
    "panjereh_inquiry_denials_total", "Inquiries the access policy refused, by reason", ["reason"]
)
REPLIES_REFUSED = Counter(
    "panjereh_inquiry_replies_refused_total",
    "Agency replies refused because they did not come from the agency that was asked, by the "
    "topic they arrived on and why (wrong_topic, wrong_source)",
    ["topic", "reason"],
)
AUDIT_VERIFICATION_FAILURES = Counter(
    "panjereh_audit_verification_failures_total",
    "Audit-chain verifications that found a broken, altered or missing entry, or a checkpoint "
    "the chain no longer matches",
)
