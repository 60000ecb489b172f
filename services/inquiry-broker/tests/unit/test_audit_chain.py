from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from panjereh.inquiry_broker.audit import GENESIS, entry_hash, first_broken


def chain(length: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    start = datetime(2026, 11, 28, 12, tzinfo=UTC)
    for seq in range(1, length + 1):
        entry: dict[str, Any] = {
            "seq": seq,
            "id": uuid.uuid4(),
            "recorded_at": start + timedelta(seconds=seq),
            "decision": "allowed",
            "reason": "card",
            "inquiry_id": uuid.uuid4(),
            "inquiry_type": "tax.clearance",
            "provider_agency": "tax",
            "caller": "requests",
            "caller_role": "service:requests",
            "caller_agency": None,
            "subject_hash": "ab" * 32,
            "service_code": "S-1",
            "tracking_code": str(seq),
            "legal_basis": "قانون",
            "prev_hash": prev,
        }
        entry["entry_hash"] = prev = entry_hash(prev, entry)
        entries.append(entry)
    return entries


class TestChain:
    def test_an_untouched_chain_verifies(self) -> None:
        assert first_broken(chain(5)) == (5, None)

    def test_a_changed_field_names_that_entry(self) -> None:
        entries = chain(5)
        entries[2]["legal_basis"] = "something else"
        checked, broken = first_broken(entries)
        assert broken is not None
        assert (broken.seq, broken.problem, checked) == (3, "content_changed", 3)

    def test_a_removed_entry_names_its_successor(self) -> None:
        entries = chain(5)
        del entries[1]
        _, broken = first_broken(entries)
        assert broken is not None
        assert (broken.seq, broken.problem) == (3, "chain_broken")

    def test_a_rehashed_entry_still_breaks_the_link_to_the_next(self) -> None:
        entries = chain(4)
        entries[1]["caller"] = "intruder"
        entries[1]["entry_hash"] = entry_hash(entries[1]["prev_hash"], entries[1])
        _, broken = first_broken(entries)
        assert broken is not None
        assert (broken.seq, broken.problem) == (3, "chain_broken")
