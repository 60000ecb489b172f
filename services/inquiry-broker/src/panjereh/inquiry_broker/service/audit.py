"""The audit log of access decisions: every permission and refusal, MAC-chained, checkpointed.

The chain itself (what an entry's MAC covers, how a broken link is found, what a checkpoint
states) is :mod:`panjereh.inquiry_broker.audit`; these are the use cases that write it, sign
its head and check it.

Every append needs the audit chain key. The process installs it once at startup
(:func:`use_chain_key`); a caller may also pass ``chain_key=`` itself. Without either, an
append refuses to run rather than write an entry nobody could check.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Unit
from panjereh.common.messaging import outbox
from panjereh.contracts.inquiry import AuditCheckpointed
from panjereh.inquiry_broker.audit import (
    CHECKPOINT_MEDIA_TYPE,
    ChainVerifier,
    Checkpoint,
    InvalidCheckpoint,
    verify_checkpoint,
)
from panjereh.inquiry_broker.errors import CheckpointInvalid, NoCheckpointYet
from panjereh.inquiry_broker.metrics import AUDIT_VERIFICATION_FAILURES
from panjereh.inquiry_broker.models import AuditCheckpoint, InquiryType
from panjereh.inquiry_broker.policy import Decision
from panjereh.inquiry_broker.repository import AuditRepository, PendingWrites
from panjereh.inquiry_broker.schemas import (
    AuditVerification,
    BrokenEntryRead,
    CheckpointCheckRead,
    CheckpointRead,
    PurposeIn,
)
from panjereh.inquiry_broker.signing import AnswerSigner

logger = logging.getLogger(__name__)

#: Where the checkpoint ``/audit/verify`` compared the chain with came from.
CheckpointSource = Literal["stored", "supplied"]

#: The longest claimed sender kept from a refused reply (it is whatever the sender wrote).
_CLAIM_LIMIT = 100


class AuditChainDiverged(RuntimeError):
    """The chain lost or changed the entry the last checkpoint vouched for."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"the audit chain no longer holds checkpointed entry {seq}")


@dataclass
class _InstalledKey:
    key: bytes | None = None


_installed = _InstalledKey()


def use_chain_key(key: bytes) -> None:
    """Install this process's audit chain key (at startup, before any request)."""
    if not key:
        msg = "the audit chain key must not be empty"
        raise ValueError(msg)
    _installed.key = key


def _chain_key(given: bytes | None) -> bytes:
    key = given or _installed.key
    if not key:
        msg = "no audit chain key: the service installs one at startup (use_chain_key)"
        raise RuntimeError(msg)
    return key


async def record_decision(
    session: Unit,
    *,
    decision: Decision,
    at: datetime,
    inquiry_id: uuid.UUID,
    inquiry_type: InquiryType,
    caller: str,
    caller_agency: str | None,
    subject_hash: str,
    purpose: PurposeIn,
    legal_basis: str | None,
    chain_key: bytes | None = None,
    along: PendingWrites | None = None,
) -> None:
    """Append the policy's decision on one request to the chain (refusals too).

    ``inquiry_id`` is the id the inquiry gets if allowed; a refusal's entry names none.
    ``along``: the allowed inquiry's own writes, made by the statement that appends the
    entry (and takes the chain's lock).
    """
    await AuditRepository(session).append(
        {
            "id": uuid.uuid4(),
            "recorded_at": at,
            "decision": "allowed" if decision.allowed else "denied",
            "reason": decision.reason.value,
            "inquiry_id": inquiry_id if decision.allowed else None,
            "inquiry_type": inquiry_type.name,
            "provider_agency": inquiry_type.provider_agency,
            "caller": caller,
            "caller_role": decision.acting_as,
            "caller_agency": caller_agency,
            "subject_hash": subject_hash,
            "service_code": purpose.service_code,
            "tracking_code": purpose.tracking_code,
            "legal_basis": legal_basis,
            "claimed_agency": None,
        },
        key=_chain_key(chain_key),
        along=along,
    )


async def record_refused_reply(
    session: Unit,
    *,
    at: datetime,
    inquiry_id: uuid.UUID,
    inquiry_type: str,
    asked_agency: str,
    topic_agency: str | None,
    claimed_agency: str | None,
    reason: str,
    chain_key: bytes | None = None,
) -> None:
    """Append a refused agency reply: who was asked, whose topic it came on, whom it claimed
    to be from, and why it was refused. Nothing personal: no subject, result or request."""
    sender = topic_agency or "unknown"
    await AuditRepository(session).append(
        {
            "id": uuid.uuid4(),
            "recorded_at": at,
            "decision": "reply_refused",
            "reason": reason,
            "inquiry_id": inquiry_id,
            "inquiry_type": inquiry_type,
            "provider_agency": asked_agency,
            "caller": f"agency/{sender}",
            "caller_role": None,
            "caller_agency": topic_agency,
            # no citizen's tracker lists it: an empty string is nobody's keyed hash
            "subject_hash": "",
            "service_code": None,
            "tracking_code": None,
            "legal_basis": None,
            "claimed_agency": claimed_agency[:_CLAIM_LIMIT] if claimed_agency else None,
        },
        key=_chain_key(chain_key),
    )


async def issue_checkpoint(
    session: AsyncSession, *, signer: AnswerSigner, at: datetime
) -> CheckpointRead | None:
    """Sign the chain's head, keep it and publish it on ``audit.checkpoints`` (outbox).

    Nothing when the log is empty or its head is already checkpointed. Holds the chain lock,
    so the head and the count are those of one moment on every replica. A chain that no
    longer holds the last checkpoint's head (its tail was cut or rewritten) is never signed:
    :class:`AuditChainDiverged` instead, every time, until someone looks (an alert on the
    worker's failures); signing it would vouch for the cut.
    """
    repository = AuditRepository(session)
    await repository.lock_chain()
    head = await repository.head()
    if head is None:
        return None
    head_seq, head_hash = head
    last = await repository.latest_checkpoint()
    if last is not None and last.head_seq == head_seq and last.head_hash == head_hash:
        return None
    after, before = (last.head_seq, last.entries) if last is not None else (0, 0)
    if last is not None and await repository.hash_at(last.head_seq) != last.head_hash:
        logger.error(
            "audit chain no longer holds the last checkpoint's head; not signing",
            extra={"checkpoint_seq": last.head_seq, "head_seq": head_seq},
        )
        AUDIT_VERIFICATION_FAILURES.inc()
        raise AuditChainDiverged(last.head_seq)
    count = before + await repository.count_between(after, head_seq)
    checkpoint = Checkpoint(seq=head_seq, head=head_hash, count=count, issued_at=at)
    jws = signer.sign_as(CHECKPOINT_MEDIA_TYPE, checkpoint.payload())
    await repository.add_checkpoint(
        AuditCheckpoint(
            head_seq=head_seq, head_hash=head_hash, entries=count, issued_at=at, jws=jws
        )
    )
    payload = checkpoint.payload()
    await outbox.add(
        session,
        AuditCheckpointed(
            log=payload["log"],
            seq=head_seq,
            head=head_hash,
            count=count,
            issued_at=at,
            jws=jws,
        ),
        key=payload["log"],
    )
    return _read(checkpoint, jws)


async def latest_checkpoint(session: AsyncSession) -> CheckpointRead:
    """The last checkpoint the broker signed (what auditors poll and keep)."""
    last = await AuditRepository(session).latest_checkpoint()
    if last is None:
        raise NoCheckpointYet
    return _read(
        Checkpoint(
            seq=last.head_seq, head=last.head_hash, count=last.entries, issued_at=last.issued_at
        ),
        last.jws,
    )


async def verify_chain(
    session: AsyncSession,
    *,
    jwks: Mapping[str, Any],
    supplied: str | None = None,
    chain_key: bytes | None = None,
) -> AuditVerification:
    """Walk the chain in order (streamed); name the first entry that does not match, and
    compare it with a checkpoint: the one ``supplied`` (an auditor's copy), else the last
    stored one. Either must verify with ``jwks`` (the broker's keys)."""
    repository = AuditRepository(session)
    checkpoint, source = await _checkpoint_to_compare(repository, jwks=jwks, supplied=supplied)
    verifier = ChainVerifier(_chain_key(chain_key), checkpoint)
    first: BrokenEntryRead | None = None
    async for entry in repository.walk():
        if first is not None:
            verifier.observe(entry)
            continue
        broken = verifier.check(entry)
        if broken is not None:
            first = BrokenEntryRead(
                seq=broken.seq, id=broken.id, recorded_at=broken.recorded_at, problem=broken.problem
            )
    verifier.finish()
    compared = None
    if checkpoint is not None and source is not None:
        compared = CheckpointCheckRead(
            seq=checkpoint.seq,
            head=checkpoint.head,
            count=checkpoint.count,
            issued_at=checkpoint.issued_at,
            source=source,
            problem=verifier.checkpoint_problem,
        )
    valid = first is None and verifier.checkpoint_problem is None
    if not valid:
        AUDIT_VERIFICATION_FAILURES.inc()
    return AuditVerification(
        valid=valid,
        checked=verifier.checked,
        first_broken=first,
        checkpoint=compared,
    )


async def _checkpoint_to_compare(
    repository: AuditRepository, *, jwks: Mapping[str, Any], supplied: str | None
) -> tuple[Checkpoint | None, CheckpointSource | None]:
    if supplied is not None:
        try:
            return verify_checkpoint(supplied, jwks), "supplied"
        except InvalidCheckpoint as exc:
            raise CheckpointInvalid from exc
    stored = await repository.latest_checkpoint()
    if stored is None:
        return None, None
    try:
        return verify_checkpoint(stored.jws, jwks), "stored"
    except InvalidCheckpoint:
        # signed by a key this broker no longer holds (a dev process's ephemeral key), or
        # planted: either way it vouches for nothing. An auditor supplies its own copy.
        logger.warning("stored audit checkpoint does not verify", extra={"id": stored.id})
        return None, None


def _read(checkpoint: Checkpoint, jws: str) -> CheckpointRead:
    return CheckpointRead(
        seq=checkpoint.seq,
        head=checkpoint.head,
        count=checkpoint.count,
        issued_at=checkpoint.issued_at,
        jws=jws,
    )
