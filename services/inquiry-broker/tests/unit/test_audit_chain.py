from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from panjereh.inquiry_broker.audit import (
    GENESIS,
    KEYED,
    ChainVerifier,
    Checkpoint,
    entry_hash,
    entry_mac,
    first_broken,
)

KEY = b"k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r"


def chain(length: int, *, keyed_from: int | None = None) -> list[dict[str, Any]]:
    """``length`` entries by the unkeyed rule, keyed from the ``keyed_from``-th on."""
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
            "claimed_agency": None,
            "prev_hash": prev,
        }
        if keyed_from is not None and seq >= keyed_from:
            entry["chain_version"] = KEYED
            entry["entry_hash"] = prev = entry_mac(KEY, prev, entry)
        else:
            entry["chain_version"] = 1
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


class TestKeyedChain:
    def test_unkeyed_entries_then_keyed_ones_verify_with_the_key(self) -> None:
        assert first_broken(chain(6, keyed_from=4), KEY) == (6, None)

    def test_a_keyed_entry_rehashed_by_the_unkeyed_rule_is_caught(self) -> None:
        entries = chain(5, keyed_from=1)
        entries[1]["caller"] = "intruder"
        entries[1]["entry_hash"] = entry_hash(entries[1]["prev_hash"], entries[1])
        _, broken = first_broken(entries, KEY)
        assert broken is not None
        assert (broken.seq, broken.problem) == (2, "content_changed")

    def test_another_key_checks_nothing(self) -> None:
        _, broken = first_broken(chain(3, keyed_from=1), b"another-key-altogether-00000000")
        assert broken is not None
        assert (broken.seq, broken.problem) == (1, "content_changed")

    def test_an_entry_downgraded_to_the_unkeyed_rule_after_keyed_ones_is_caught(self) -> None:
        entries = chain(5, keyed_from=2)
        entries[3]["chain_version"] = 1
        entries[3]["entry_hash"] = entry_hash(entries[3]["prev_hash"], entries[3])
        _, broken = first_broken(entries, KEY)
        assert broken is not None
        assert (broken.seq, broken.problem) == (4, "unkeyed_after_keyed")


def against(entries: list[dict[str, Any]], checkpoint: Checkpoint) -> str | None:
    verifier = ChainVerifier(KEY, checkpoint)
    for entry in entries:
        verifier.check(entry)
    verifier.finish()
    return verifier.checkpoint_problem


class TestCheckpoint:
    def at(self, entries: list[dict[str, Any]], index: int) -> Checkpoint:
        entry = entries[index]
        return Checkpoint(
            seq=entry["seq"], head=entry["entry_hash"], count=index + 1, issued_at=datetime.now(UTC)
        )

    def test_a_chain_that_reaches_the_head_intact_matches(self) -> None:
        entries = chain(6, keyed_from=1)
        assert against(entries, self.at(entries, 3)) is None

    def test_a_truncated_tail_is_caught(self) -> None:
        entries = chain(6, keyed_from=1)
        assert against(entries[:3], self.at(entries, 4)) == "truncated"

    def test_a_removed_entry_before_the_head_changes_the_count(self) -> None:
        entries = chain(6, keyed_from=1)
        checkpoint = self.at(entries, 4)
        del entries[2]
        assert against(entries, checkpoint) == "count_changed"

    def test_another_head_is_caught(self) -> None:
        entries = chain(6, keyed_from=1)
        checkpoint = self.at(entries, 4)
        entries[4]["entry_hash"] = "f" * 64
        assert against(entries, checkpoint) == "head_changed"
