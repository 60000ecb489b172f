"""Decision receipts: what every decision leaves behind, signed, and how it is replayed.

A receipt signs the facts of a decision (card code and version, rule, outcome, who decided,
when) and the SHA-256 of the evidence it rested on: the canonical JSON of the inputs and of
each inquiry's answer. It does not copy the evidence (that is personal data, kept once, in
its own rows): it pins it. A replay re-runs the receipt's card version over the stored
evidence and says whether the outcome is the same, and whether the stored evidence still
hashes to what was signed (``evidence_intact``): a changed input or answer is detected even if
whoever changed it also changed the stored hashes, because those are not what is compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.jwk import InvalidJws, canonical_json
from panjereh.contracts.catalog import PublishedCard
from panjereh.requests.errors import ReceiptNotFound, RequestNotFound
from panjereh.requests.keys import DocumentKeys
from panjereh.requests.models import DecisionReceipt, Request, RequestInquiry
from panjereh.requests.repository import CardRepository, RequestRepository
from panjereh.requests.rules import Verdict
from panjereh.requests.schemas import ReceiptRead, ReplayResult
from panjereh.requests.service import rulings
from panjereh.requests.service.reads import Reader
from panjereh.requests.statuses import Actor

RECEIPT_TYP = "decision-receipt+jws"
#: inquiry statuses whose answer is evidence (signed by the broker, hashed here)
ANSWERED = frozenset({"answered", "not_found"})


def digest(value: Any) -> str:
    """Hex SHA-256 of ``value``'s canonical JSON (sorted keys, no spaces, UTF-8)."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def _evidence_entry(row: RequestInquiry) -> dict[str, Any]:
    return {
        "type": row.inquiry_type,
        "inquiry_id": str(row.broker_inquiry_id) if row.broker_inquiry_id else None,
        "status": row.status,
        "result_sha256": digest(row.result) if row.status in ANSWERED else None,
    }


def payload_of(request: Request, evidence: Sequence[RequestInquiry]) -> dict[str, Any]:
    assert request.decided_at is not None
    return {
        "tracking_code": request.tracking_code,
        "service_code": request.service_code,
        "service_version": request.service_version,
        "rule_id": request.rule_id,
        "outcome": request.outcome,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at.isoformat(),
        "inputs_sha256": digest(request.inputs),
        "inquiries": [_evidence_entry(row) for row in sorted(evidence, key=_by_type)],
    }


def _by_type(row: RequestInquiry) -> str:
    return row.inquiry_type


async def write(
    session: AsyncSession, request: Request, *, keys: DocumentKeys, at: datetime
) -> None:
    """Sign and keep the receipt of ``request``'s decision (already set on the row)."""
    evidence = await RequestRepository(session).inquiries(request.id)
    payload = payload_of(request, evidence)
    session.add(
        DecisionReceipt(
            request_id=request.id,
            payload=payload,
            jws=keys.sign(payload, typ=RECEIPT_TYP),
            created_at=at,
        )
    )


async def _auditable(session: AsyncSession, *, reader: Reader, tracking_code: str) -> Request:
    """The owner, the card's agency and auditors may see a decision's receipt; others 404."""
    request = await RequestRepository(session).by_tracking_code(tracking_code)
    if request is None or not (reader.may_read(request) or reader.auditor):
        raise RequestNotFound
    return request


async def get(session: AsyncSession, *, reader: Reader, tracking_code: str) -> ReceiptRead:
    request = await _auditable(session, reader=reader, tracking_code=tracking_code)
    receipt = await RequestRepository(session).receipt(request.id)
    if receipt is None:
        raise ReceiptNotFound
    return ReceiptRead(
        tracking_code=request.tracking_code, payload=receipt.payload, jws=receipt.jws
    )


@dataclass(frozen=True)
class ReplayCase:
    """A receipt read back: what it says, whether the evidence still matches, what to re-run."""

    outcome: str | None
    rule_id: str | None
    evidence_intact: bool
    #: the rules to re-run (None: an officer decided, or the card version is gone)
    evaluation: rulings.Evaluation | None
    #: the decision's time: the rules' ``now`` again, so age limits and dates replay alike
    decided_at: datetime | None = None
    #: why nothing is re-run for a decision by rules (the card version is not known here)
    missing_card: bool = False


async def replay_case(
    session: AsyncSession, *, reader: Reader, tracking_code: str, keys: DocumentKeys
) -> ReplayCase:
    """Read the receipt and its evidence (the rules run afterwards, outside the transaction)."""
    request = await _auditable(session, reader=reader, tracking_code=tracking_code)
    requests = RequestRepository(session)
    receipt = await requests.receipt(request.id)
    if receipt is None:
        raise ReceiptNotFound
    evidence = await requests.inquiries(request.id)
    signed = _signed_payload(receipt, keys)
    claimed = signed if signed is not None else receipt.payload
    intact = signed is not None and _evidence_matches(signed, request, evidence)
    outcome, rule_id = claimed.get("outcome"), claimed.get("rule_id")
    if claimed.get("decided_by") != Actor.RULES:
        # an officer's (or agency system's) decision: there are no rules to re-run, the
        # replay reports the recorded decision and checks its evidence
        return ReplayCase(outcome=outcome, rule_id=rule_id, evidence_intact=intact, evaluation=None)
    version = await CardRepository(session).get(
        str(claimed.get("service_code")), int(claimed.get("service_version") or 0)
    )
    if version is None:
        return ReplayCase(
            outcome=outcome,
            rule_id=rule_id,
            evidence_intact=intact,
            evaluation=None,
            missing_card=True,
        )
    card = PublishedCard.model_validate(version.card)
    results = {row.inquiry_type: row.result for row in evidence if row.status == "answered"}
    evaluation = rulings.Evaluation(
        decision=card.decision,
        variables=rulings.variables(
            inputs=request.inputs, results=results, national_code=request.national_code
        ),
    )
    return ReplayCase(
        outcome=outcome,
        rule_id=rule_id,
        evidence_intact=intact,
        evaluation=evaluation,
        decided_at=datetime.fromisoformat(str(claimed["decided_at"])),
    )


def replay_result(case: ReplayCase, verdict: Verdict | None) -> ReplayResult:
    """Compare what the rules say now with what the receipt recorded."""
    if case.evaluation is None:
        if case.missing_card:
            return ReplayResult(
                same_outcome=False, outcome=None, rule_id=None, evidence_intact=False
            )
        return ReplayResult(
            same_outcome=True,
            outcome=case.outcome,  # type: ignore[arg-type]  # approve | reject, as signed
            rule_id=case.rule_id,
            evidence_intact=case.evidence_intact,
        )
    ruling = (
        rulings.ruling_of(case.evaluation.decision, verdict)
        if verdict is not None
        else rulings.not_evaluated("not evaluated")
    )
    return ReplayResult(
        same_outcome=(ruling.outcome, ruling.rule_id) == (case.outcome, case.rule_id),
        outcome=ruling.outcome,
        rule_id=ruling.rule_id,
        evidence_intact=case.evidence_intact,
    )


def _signed_payload(receipt: DecisionReceipt, keys: DocumentKeys) -> dict[str, Any] | None:
    """The payload the signature covers, when it verifies and the stored copy agrees."""
    try:
        header, payload = keys.verify(receipt.jws)
    except InvalidJws:
        return None
    if header.get("typ") != RECEIPT_TYP or payload != receipt.payload:
        return None
    return payload


def _evidence_matches(
    signed: dict[str, Any], request: Request, evidence: Sequence[RequestInquiry]
) -> bool:
    """Whether the stored request and answers are still what the receipt signed.

    Hashes are recomputed from the stored values (never read from ``result_sha256``), so
    editing a value and its stored hash together is still caught.
    """
    facts = (
        request.tracking_code,
        request.service_code,
        request.service_version,
        request.outcome,
        request.rule_id,
        request.decided_by,
    )
    signed_facts = tuple(
        signed.get(name)
        for name in (
            "tracking_code",
            "service_code",
            "service_version",
            "outcome",
            "rule_id",
            "decided_by",
        )
    )
    if facts != signed_facts or signed.get("inputs_sha256") != digest(request.inputs):
        return False
    now_entries = [_evidence_entry(row) for row in sorted(evidence, key=_by_type)]
    return bool(now_entries == signed.get("inquiries"))
