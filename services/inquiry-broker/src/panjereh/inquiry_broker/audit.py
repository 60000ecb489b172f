"""The tamper-evident audit log: each entry carries the hash of the one before it.

``entry_hash = SHA-256(prev_hash ‖ canonical_json(fields))`` where ``fields`` are every column
but the sequence number and the hashes themselves. Changing any field of any entry, removing
an entry or reordering entries breaks the chain at that entry; :func:`first_broken` names it.
The first entry's ``prev_hash`` is :data:`GENESIS`. (Dropping entries from the *end* leaves a
valid shorter chain; publishing the head hash elsewhere from time to time closes that gap.)
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from panjereh.inquiry_broker.canonical import canonical_json

GENESIS = "0" * 64

#: ``content_changed``: the entry no longer matches its hash; ``chain_broken``: its
#: ``prev_hash`` is not its predecessor's hash (an entry removed, or one re-hashed).
Problem = Literal["content_changed", "chain_broken"]

#: The columns an entry's hash covers, in the audit table's words.
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


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    content = {name: fields[name] for name in HASHED_FIELDS}
    return hashlib.sha256(prev_hash.encode() + canonical_json(content)).hexdigest()


@dataclass(frozen=True)
class BrokenEntry:
    """The first entry whose stored hashes do not match the chain."""

    seq: int
    id: uuid.UUID
    recorded_at: datetime
    problem: Problem


class ChainVerifier:
    """Checks entries one at a time, in ``seq`` order, so a long log is streamed, not loaded."""

    def __init__(self) -> None:
        self.expected_prev = GENESIS
        self.checked = 0

    def check(self, entry: Mapping[str, Any]) -> BrokenEntry | None:
        self.checked += 1
        if entry["prev_hash"] != self.expected_prev:
            return _broken(entry, "chain_broken")
        if entry_hash(entry["prev_hash"], entry) != entry["entry_hash"]:
            return _broken(entry, "content_changed")
        self.expected_prev = entry["entry_hash"]
        return None


def first_broken(entries: Iterable[Mapping[str, Any]]) -> tuple[int, BrokenEntry | None]:
    """Walk ``entries`` (in ``seq`` order); how many were checked and the first broken one."""
    verifier = ChainVerifier()
    for entry in entries:
        broken = verifier.check(entry)
        if broken is not None:
            return verifier.checked, broken
    return verifier.checked, None


def _broken(entry: Mapping[str, Any], problem: Problem) -> BrokenEntry:
    return BrokenEntry(
        seq=entry["seq"], id=entry["id"], recorded_at=entry["recorded_at"], problem=problem
    )
