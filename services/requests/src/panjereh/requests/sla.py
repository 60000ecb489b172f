"""Due times from a card's SLA, in business days of the Iranian government week.

Government offices work Saturday to Wednesday; Thursday and Friday are the weekend. A request
submitted on a weekend starts counting on the next business day. ``sla_days`` business days
after submission, the request is due at the end of that day, Tehran time. A card with
``sla_days = 0`` promises an answer within its ``processing_time`` (ISO 8601, e.g. ``PT5M``),
or within the hour when it gives none. Official holidays are not modelled yet: a due time
that falls on one is a day early, never late.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

TEHRAN = ZoneInfo("Asia/Tehran")
#: Python's weekday(): Thursday is 3, Friday 4
WEEKEND = frozenset({3, 4})
END_OF_DAY = time(23, 59, 59)
_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
DEFAULT_PROCESSING = timedelta(hours=1)


def parse_duration(text: str | None) -> timedelta | None:
    """``P3D``, ``PT5M``, ``P1DT2H`` → a timedelta; None for anything else (years, months)."""
    if not text:
        return None
    match = _DURATION.match(text)
    if match is None or not any(match.groupdict().values()):
        return None
    parts = {name: int(value) for name, value in match.groupdict().items() if value}
    return timedelta(**parts)


def add_business_days(start: datetime, days: int) -> datetime:
    """The end (Tehran time) of the ``days``-th business day after ``start``."""
    day = start.astimezone(TEHRAN).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if day.weekday() not in WEEKEND:
            counted += 1
    return datetime.combine(day, END_OF_DAY, tzinfo=TEHRAN)


def due_at(submitted_at: datetime, *, sla_days: int, processing_time: str | None) -> datetime:
    if sla_days > 0:
        return add_business_days(submitted_at, sla_days)
    return submitted_at + (parse_duration(processing_time) or DEFAULT_PROCESSING)
