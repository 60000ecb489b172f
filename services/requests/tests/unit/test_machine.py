"""The status machine, tracking codes and due times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from panjereh.requests import sla, statuses
from panjereh.requests.statuses import FINAL, Actor, IllegalTransition, Status
from panjereh.requests.tracking import (
    LENGTH,
    is_valid_tracking_code,
    luhn_check_digit,
    new_tracking_code,
)

#: every allowed move, written out once more by hand: the machine must equal it
EXPECTED = {
    (None, "submitted", "citizen"),
    ("submitted", "awaiting_inquiries", "system"),
    ("submitted", "deciding", "system"),
    ("submitted", "in_review", "system"),
    ("awaiting_inquiries", "deciding", "system"),
    ("awaiting_inquiries", "in_review", "system"),
    ("awaiting_inquiries", "failed", "system"),
    ("deciding", "approved", "rules"),
    ("deciding", "rejected", "rules"),
    ("deciding", "in_review", "rules"),
    ("deciding", "in_review", "system"),
    ("in_review", "approved", "officer"),
    ("in_review", "approved", "agency-system"),
    ("in_review", "rejected", "officer"),
    ("in_review", "rejected", "agency-system"),
    ("submitted", "cancelled", "citizen"),
    ("awaiting_inquiries", "cancelled", "citizen"),
    ("deciding", "cancelled", "citizen"),
    ("in_review", "cancelled", "citizen"),
}


class TestMachine:
    def test_every_move_is_allowed_exactly_when_listed(self) -> None:
        """All (from, to, actor) triples: the allowed ones are exactly the expected ones."""
        allowed = set()
        for current, target, actor in itertools.product([None, *Status], Status, Actor):
            try:
                statuses.check(current, target, actor)
            except IllegalTransition:
                continue
            allowed.add((current.value if current else None, target.value, actor.value))
        assert allowed == EXPECTED

    @pytest.mark.parametrize("final", sorted(FINAL))
    def test_nothing_leaves_a_final_status(self, final: Status) -> None:
        for target, actor in itertools.product(Status, Actor):
            with pytest.raises(IllegalTransition):
                statuses.check(final, target, actor)

    def test_rules_never_decide_a_request_in_review(self) -> None:
        with pytest.raises(IllegalTransition):
            statuses.check(Status.IN_REVIEW, Status.APPROVED, Actor.RULES)


class TestTrackingCodes:
    def test_codes_are_numeric_with_a_valid_check_digit(self) -> None:
        codes = {new_tracking_code() for _ in range(2000)}
        assert len(codes) == 2000  # random, 10^12 space: no repeats in a small sample
        for code in codes:
            assert len(code) == LENGTH
            assert code.isdigit()
            assert code[0] != "0"
            assert is_valid_tracking_code(code)

    def test_codes_are_not_sequential(self) -> None:
        first, second = sorted(int(new_tracking_code()) for _ in range(2))
        assert second - first != 1 or first % 10 != 9  # neighbours are vanishingly unlikely

    def test_every_single_digit_typo_is_caught(self) -> None:
        code = new_tracking_code()
        for position in range(LENGTH):
            for digit in "0123456789":
                if digit == code[position]:
                    continue
                typo = code[:position] + digit + code[position + 1 :]
                assert not is_valid_tracking_code(typo), typo

    def test_the_luhn_digit_matches_a_known_vector(self) -> None:
        # the classic Luhn example: 7992739871 → check digit 3
        assert luhn_check_digit("7992739871") == 3

    @pytest.mark.parametrize("bad", ["", "12345", "abcdefghijklm", "1234567890123 "])
    def test_malformed_codes_are_invalid(self, bad: str) -> None:
        assert not is_valid_tracking_code(bad)


class TestDueTimes:
    def test_business_days_skip_thursday_and_friday(self) -> None:
        wednesday = datetime(2026, 12, 2, 9, 0, tzinfo=sla.TEHRAN)  # a Wednesday
        due = sla.due_at(wednesday, sla_days=1, processing_time=None)
        assert due.date().isoformat() == "2026-12-05"  # Saturday
        assert (due.hour, due.minute) == (23, 59)

    def test_several_business_days(self) -> None:
        saturday = datetime(2026, 12, 5, 9, 0, tzinfo=sla.TEHRAN)
        due = sla.due_at(saturday, sla_days=7, processing_time=None)
        # Sun Mon Tue Wed (4), skip Thu Fri, Sat Sun Mon (7)
        assert due.date().isoformat() == "2026-12-14"

    def test_instant_services_use_their_processing_time(self) -> None:
        now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
        assert sla.due_at(now, sla_days=0, processing_time="PT5M") == now + timedelta(minutes=5)
        assert sla.due_at(now, sla_days=0, processing_time=None) == now + timedelta(hours=1)
        assert sla.due_at(now, sla_days=0, processing_time="P1Y") == now + timedelta(hours=1)
