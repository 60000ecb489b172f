"""Decision rules run in killable worker processes: first match wins, errors never approve,
and a hostile rule is bounded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from panjereh.requests.rules import MAX_EXPRESSION_CHARS, Rule, RuleEvaluator, Verdict

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PERSON = {"inquiries": {"civil-registry.person": {"alive": True, "birth_date": "1990-01-01"}}}
ADULT = (
    'timestamp(inquiries["civil-registry.person"].birth_date + "T00:00:00Z")'
    ' <= now - duration("157788h")'
)


@pytest.fixture(scope="module")
async def evaluator() -> AsyncIterator[RuleEvaluator]:
    rules = RuleEvaluator(workers=1, timeout=1.0)
    await rules.start()
    try:
        yield rules
    finally:
        await rules.stop()


class TestFirstMatch:
    async def test_the_first_true_rule_decides(self, evaluator: RuleEvaluator) -> None:
        rules = [
            Rule("deceased", 'inquiries["civil-registry.person"].alive == false'),
            Rule("adult", ADULT),
            Rule("always", "true"),
        ]
        assert await evaluator.first_match(rules, PERSON, now=NOW) == Verdict(1)

    async def test_no_rule_matches(self, evaluator: RuleEvaluator) -> None:
        rules = [Rule("big", "inputs.amount > 100")]
        assert await evaluator.first_match(rules, {"inputs": {"amount": 5}}, now=NOW) == Verdict(
            None
        )

    async def test_a_missing_field_is_an_error_not_a_false(self, evaluator: RuleEvaluator) -> None:
        verdict = await evaluator.first_match(
            [Rule("r1", "inputs.semester > 12")], {"inputs": {}}, now=NOW
        )
        assert verdict.match is None
        assert verdict.error is not None
        assert verdict.error.startswith("rule r1:")

    async def test_a_non_boolean_result_is_an_error(self, evaluator: RuleEvaluator) -> None:
        verdict = await evaluator.first_match([Rule("n", "1 + 1")], {}, now=NOW)
        assert verdict == Verdict(None, "rule n: not a boolean (int)")

    async def test_an_error_stops_evaluation_before_later_rules(
        self, evaluator: RuleEvaluator
    ) -> None:
        """A later ``true`` must not approve when an earlier rule could not be evaluated."""
        rules = [Rule("broken", "inputs.nope == 1"), Rule("approve-all", "true")]
        verdict = await evaluator.first_match(rules, {"inputs": {}}, now=NOW)
        assert verdict.match is None
        assert verdict.error is not None


class TestBounds:
    async def test_an_overlong_expression_is_refused_unevaluated(
        self, evaluator: RuleEvaluator
    ) -> None:
        expression = "true || " * (MAX_EXPRESSION_CHARS // 8) + "true"
        verdict = await evaluator.first_match([Rule("long", expression)], {}, now=NOW)
        assert verdict.match is None
        assert verdict.error is not None
        assert "longer than" in verdict.error

    async def test_a_hostile_rule_is_abandoned_and_the_pool_recovers(self) -> None:
        evaluator = RuleEvaluator(workers=1, timeout=0.5)
        await evaluator.start()
        try:
            hostile = Rule("hostile", "inputs.l.map(x, inputs.l.map(y, x + y).size()).size() > 0")
            started = time.monotonic()
            verdict = await evaluator.first_match(
                [hostile], {"inputs": {"l": list(range(3000))}}, now=NOW
            )
            assert time.monotonic() - started < 3.0
            assert verdict == Verdict(None, "evaluation timed out")
            assert evaluator.timeouts == 1
            # the worker was replaced: the next decision is made normally
            assert await evaluator.first_match([Rule("ok", "true")], {}, now=NOW) == Verdict(0)
        finally:
            await evaluator.stop()
