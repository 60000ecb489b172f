"""The catalog's headline KPIs, computed live from the published cards and the agencies."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.repository import StatsRepository
from panjereh.catalog.schemas import Stats


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def compute_stats(session: AsyncSession, *, connected_within: timedelta) -> Stats:
    """Services by maturity, the electronic / smart / once-only shares, connected agencies."""
    stats = StatsRepository(session)
    services = await stats.services()
    by_maturity = await stats.by_maturity()
    agencies_total, agencies_connected = await stats.agencies(connected_within=connected_within)
    total = services["total"]
    return Stats(
        services_total=total,
        by_maturity={str(level): by_maturity.get(level, 0) for level in range(6)},
        electronic_share=_share(services["electronic"], total),
        smart_share=_share(services["smart"], total),
        once_only_share=_share(services["once_only"], total),
        agencies_total=agencies_total,
        agencies_connected_share=_share(agencies_connected, agencies_total),
    )
