"""The public KPIs of the requests service (``GET /api/v1/requests/stats``).

Computed by PostgreSQL in three aggregate queries, whatever the number of requests:

- ``decided_without_human_share``: of decided requests, those decided by the rules;
- ``median_minutes_to_decision``: median of submission → decision, decided requests only;
- ``sla_met_share``: of decided requests that had a due time, those decided by it;
- ``once_only_share``: inquiries made instead of asking the citizen, over inquiries made plus
  documents still asked of citizens, summed over every request;
- ``most_used``: the :data:`MOST_USED` services with the most requests (a count per service
  code, nothing about who asked).

A share with nothing to divide by is 0.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.requests.repository import StatsRepository
from panjereh.requests.schemas import RequestStats, ServiceUse

#: how many services ``most_used`` names
MOST_USED = 10


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def request_stats(session: AsyncSession) -> RequestStats:
    figures = StatsRepository(session)
    by_status = await figures.by_status()
    decided = await figures.decisions()
    return RequestStats(
        requests_total=sum(by_status.values()),
        by_status=by_status,
        decided_without_human_share=_share(decided.decided_by_rules, decided.decided),
        median_minutes_to_decision=(
            None if decided.median_minutes is None else round(decided.median_minutes, 2)
        ),
        sla_met_share=_share(decided.decided_in_time, decided.decided_with_due),
        once_only_share=_share(
            decided.inquiries_made, decided.inquiries_made + decided.documents_asked
        ),
        most_used=[
            ServiceUse(service_code=code, requests=count)
            for code, count in await figures.most_used(MOST_USED)
        ],
    )
