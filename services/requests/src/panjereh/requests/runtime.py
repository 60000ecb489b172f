"""Request flows that span more than one unit of work, at the boundary.

A receipt's replay reads the receipt and its evidence in one short transaction and only then
runs the card's rules (in a rule worker, up to the evaluation's time budget, queued behind
the orchestration's own decisions): holding a pooled connection while waiting for a rule
worker would let a burst of replays starve the pool. That is why this flow lives here and not
in :mod:`panjereh.requests.service`, whose functions run inside the caller's transaction.
"""

from __future__ import annotations

from panjereh.common.db import Database
from panjereh.requests.keys import DocumentKeys
from panjereh.requests.rules import RuleEvaluator
from panjereh.requests.schemas import ReplayResult
from panjereh.requests.service import receipts
from panjereh.requests.service.reads import Reader


async def replay_receipt(
    database: Database,
    *,
    evaluator: RuleEvaluator,
    keys: DocumentKeys,
    reader: Reader,
    tracking_code: str,
) -> ReplayResult:
    """Re-run the receipt's card version over the recorded evidence and compare."""
    async with database.transaction() as session:
        case = await receipts.replay_case(
            session, reader=reader, tracking_code=tracking_code, keys=keys
        )
    verdict = None
    if case.evaluation is not None and case.decided_at is not None:
        verdict = await evaluator.first_match(
            case.evaluation.rules, case.evaluation.variables, now=case.decided_at
        )
    return receipts.replay_result(case, verdict)
