"""The requests service's own metrics, beside the kernel's (same registry, same ``/metrics``).

Labels are closed vocabularies plus the catalog's service codes and rule ids (bounded by the
catalog: a few thousand cards): never a tracking code, a citizen or a national code.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from panjereh.common.metrics import LATENCY_BUCKETS

TRANSITIONS = Counter(
    "panjereh_request_transitions_total",
    "Requests entering a status, by status and who moved them",
    ["to", "actor"],
)
DECISIONS = Counter(
    "panjereh_request_decisions_total",
    "Decided requests, by outcome, who decided (rules, officer, agency-system), service and "
    "rule (empty when no rule matched or a person decided)",
    ["outcome", "decided_by", "service_code", "rule_id"],
)
TIME_TO_DECISION = Histogram(
    "panjereh_request_decision_seconds",
    "From submission to decision, by who decided",
    ["decided_by"],
    buckets=(*LATENCY_BUCKETS, 60.0, 300.0, 3600.0, 86400.0, 7 * 86400.0),
)
OVERDUE = Counter("panjereh_requests_overdue_total", "Requests found past their due time")
