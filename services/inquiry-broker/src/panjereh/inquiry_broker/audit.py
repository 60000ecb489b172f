"""The tamper-evident audit log: each entry carries a MAC of the one before it.

An entry's ``entry_hash`` is ``HMAC-SHA256(key, prev_hash ‖ canonical_json(fields))`` where
``fields`` are every column but the sequence number and the hashes themselves, and ``key`` is
the broker's audit chain key (a setting, never in the database). Whoever can write the table
but does not hold the key can change, remove or reorder entries, but cannot recompute the MACs
that would hide it: :class:`ChainVerifier` names the first entry that no longer matches. The
first entry's ``prev_hash`` is :data:`GENESIS`.

``chain_version`` says which rule an entry was written by:

- :data:`UNKEYED` (1): the entries written before the chain was keyed, by the old rule
  ``SHA-256(prev_hash ‖ canonical_json(fields))``. They are kept as they are (rewriting
  history to re-key it would itself be the kind of change the log exists to show) and are
  anchored by the first keyed entry, whose MAC covers the last unkeyed hash. An unkeyed entry
  after a keyed one is refused (``unkeyed_after_keyed``): nothing writes one any more.
- :data:`KEYED` (2): the HMAC above; its fields include the claimed agency of a refused reply.

Dropping entries from the *end*, or downgrading every keyed entry to the unkeyed rule, leaves
a chain that checks; that is what signed checkpoints close (:class:`Checkpoint`): the broker
signs the head's sequence number, MAC and the number of entries from time to time and
publishes it outside the database (``audit.checkpoints`` and an endpoint auditors poll). A
chain that no longer reaches a checkpoint's head, or reaches it with another MAC or another
count, has lost or changed entries the checkpoint vouched for.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from panjereh.common import jwk
from panjereh.inquiry_broker.canonical import canonical_json

GENESIS = "0" * 64
UNKEYED = 1
KEYED = 2

#: ``content_changed``: the entry no longer matches its hash; ``chain_broken``: its
#: ``prev_hash`` is not its predecessor's hash (an entry removed, or one re-hashed);
#: ``unkeyed_after_keyed``: an entry claims the old, unkeyed rule after the chain was keyed.
Problem = Literal["content_changed", "chain_broken", "unkeyed_after_keyed"]
#: How the chain compares with a checkpoint: it ends before the checkpoint's head
#: (``truncated``), holds another entry there (``head_changed``), or reaches it with another
#: number of entries (``count_changed``).
CheckpointProblem = Literal["truncated", "head_changed", "count_changed"]

#: The columns the unkeyed rule covers, in the audit table's words.
HASHED_FIELDS = (
    "id",
    "recorded_at",
    "decision",
    "reason",
    "inquiry_id",
    "inquiry_type",
    "provider_agency",
    "caller",
    "caller_role",
    "caller_agency",
    "subject_hash",
    "service_code",
    "tracking_code",
    "legal_basis",
)
#: The columns the keyed rule covers: the same, the claimed agency and the rule itself.
KEYED_FIELDS = (*HASHED_FIELDS, "claimed_agency", "chain_version")

#: What a checkpoint's JWS header says it is (the same key signs answers).
CHECKPOINT_MEDIA_TYPE = "audit-checkpoint+jws"
#: Which log a checkpoint is of.
LOG_NAME = "panjereh.inquiry-broker.audit"


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The unkeyed rule (:data:`UNKEYED` entries)."""
    content = {name: fields[name] for name in HASHED_FIELDS}
    return hashlib.sha256(prev_hash.encode() + canonical_json(content)).hexdigest()


def entry_mac(key: bytes, prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The keyed rule (:data:`KEYED` entries)."""
    content = {name: fields.get(name) for name in KEYED_FIELDS}
    content["chain_version"] = KEYED
    return hmac.new(key, prev_hash.encode() + canonical_json(content), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class BrokenEntry:
    """The first entry whose stored hashes do not match the chain."""

    seq: int
    id: uuid.UUID
    recorded_at: datetime
    problem: Problem


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head as the broker saw and signed it: ``count`` entries up to ``seq``."""

    seq: int
    head: str
    count: int
    issued_at: datetime

    def payload(self) -> dict[str, Any]:
        return {
            "log": LOG_NAME,
            "seq": self.seq,
            "head": self.head,
            "count": self.count,
            "issued_at": self.issued_at.astimezone(UTC).isoformat(timespec="microseconds"),
        }


class InvalidCheckpoint(ValueError):
    """Not a checkpoint of this log signed by a key of the given JWKS."""


def verify_checkpoint(token: str, jwks: Mapping[str, Any]) -> Checkpoint:
    """The checkpoint ``token`` states, if a key of ``jwks`` signed it as one of this log."""
    try:
        header, payload = jwk.verify_compact(token, dict(jwks))
    except jwk.InvalidJws as exc:
        raise InvalidCheckpoint(str(exc)) from exc
    if header.get("typ") != CHECKPOINT_MEDIA_TYPE or payload.get("log") != LOG_NAME:
        msg = "not a checkpoint of the broker's audit log"
        raise InvalidCheckpoint(msg)
    try:
        return Checkpoint(
            seq=_positive(payload["seq"]),
            head=str(payload["head"]),
            count=_positive(payload["count"]),
            issued_at=datetime.fromisoformat(payload["issued_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        msg = "the checkpoint's fields are malformed"
        raise InvalidCheckpoint(msg) from exc


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        msg = "not a positive integer"
        raise ValueError(msg)
    return value


class ChainVerifier:
    """Checks entries one at a time, in ``seq`` order, so a long log is streamed, not loaded.

    Keyed entries are checked with ``key``; without one (a tool that holds no key) only the
    unkeyed rule can be checked and a keyed entry reads as ``content_changed``. Given a
    ``checkpoint``, it also notes whether the chain reaches the checkpoint's head intact
    (:attr:`checkpoint_problem`, final after :meth:`finish`).
    """

    def __init__(self, key: bytes | None = None, checkpoint: Checkpoint | None = None) -> None:
        self.key = key
        self.checkpoint = checkpoint
        self.expected_prev = GENESIS
        self.checked = 0
        self.keyed_seen = False
        self.checkpoint_problem: CheckpointProblem | None = None
        self._checkpoint_reached = False

    def check(self, entry: Mapping[str, Any]) -> BrokenEntry | None:
        self.checked += 1
        self._observe_checkpoint(entry)
        version = entry.get("chain_version", UNKEYED)
        if entry["prev_hash"] != self.expected_prev:
            return _broken(entry, "chain_broken")
        if version == UNKEYED and self.keyed_seen:
            return _broken(entry, "unkeyed_after_keyed")
        if version == KEYED:
            self.keyed_seen = True
            expected = entry_mac(self.key, entry["prev_hash"], entry) if self.key else None
        elif version == UNKEYED:
            expected = entry_hash(entry["prev_hash"], entry)
        else:
            expected = None
        if expected is None or not hmac.compare_digest(expected, entry["entry_hash"]):
            return _broken(entry, "content_changed")
        self.expected_prev = entry["entry_hash"]
        return None

    def observe(self, entry: Mapping[str, Any]) -> None:
        """Count an entry after the first break: only the checkpoint comparison goes on."""
        self.checked += 1
        self._observe_checkpoint(entry)

    def finish(self) -> None:
        if self.checkpoint is not None and not self._checkpoint_reached:
            self.checkpoint_problem = "truncated"

    def _observe_checkpoint(self, entry: Mapping[str, Any]) -> None:
        checkpoint = self.checkpoint
        if checkpoint is None or self._checkpoint_reached or entry["seq"] < checkpoint.seq:
            return
        self._checkpoint_reached = True
        if entry["seq"] != checkpoint.seq or entry["entry_hash"] != checkpoint.head:
            self.checkpoint_problem = "head_changed"
        elif self.checked != checkpoint.count:
            self.checkpoint_problem = "count_changed"


def first_broken(
    entries: Iterable[Mapping[str, Any]], key: bytes | None = None
) -> tuple[int, BrokenEntry | None]:
    """Walk ``entries`` (in ``seq`` order); how many were checked and the first broken one."""
    verifier = ChainVerifier(key)
    for entry in entries:
        broken = verifier.check(entry)
        if broken is not None:
            return verifier.checked, broken
    return verifier.checked, None


def _broken(entry: Mapping[str, Any], problem: Problem) -> BrokenEntry:
    return BrokenEntry(
        seq=entry["seq"], id=entry["id"], recorded_at=entry["recorded_at"], problem=problem
    )
