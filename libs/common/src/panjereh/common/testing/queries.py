"""What the database driver sends, for tests that check a unit of work's round trips.

SQLAlchemy's ``before_cursor_execute`` event sees the statements of sessions and connections;
the statements of :meth:`~panjereh.common.db.Database.direct` and
:meth:`~panjereh.common.db.Database.statement` never pass through SQLAlchemy. The driver's
own query log sees those, with every ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` (sessions'
included), though not the statements sessions send as prepared statements. Used beside the
event, it tells for each statement of a driver unit whether it ran inside a transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from panjereh.common.db import Database

_OPENS = ("BEGIN", "START TRANSACTION")
_ENDS = ("COMMIT", "ROLLBACK", "END")


@dataclass
class DriverLog:
    """Per pooled connection, in order: each query the driver logged, and whether a
    transaction was open on that connection when it ran."""

    sent: dict[int, list[tuple[str, bool]]] = field(default_factory=dict)
    _open: dict[int, bool] = field(default_factory=dict)

    def record(self, connection: Any, query: str) -> None:
        key = id(connection)
        text = " ".join(query.split())
        word = text.split(None, 1)[0].rstrip(";").upper() if text else ""
        if word in _ENDS:
            self._open[key] = False
        self.sent.setdefault(key, []).append((text, self._open.get(key, False)))
        if word in _OPENS:
            self._open[key] = True

    def statements(self) -> list[str]:
        """Every query logged, connection after connection."""
        return [text for queries in self.sent.values() for text, _ in queries]

    def in_transaction(self, fragment: str) -> list[bool]:
        """For each query containing ``fragment``: whether it ran inside a transaction."""
        return [
            inside for queries in self.sent.values() for text, inside in queries if fragment in text
        ]

    async def settled(self) -> DriverLog:
        """This log once the driver has reported what was sent so far (it reports at the
        event loop's next turn)."""
        await asyncio.sleep(0)
        return self


@contextmanager
def driver_queries(database: Database, log: DriverLog | None = None) -> Iterator[DriverLog]:
    """Log what the driver sends on every connection ``database``'s pool hands out meanwhile
    (read the log after an ``await``: :meth:`DriverLog.settled`), in ``log`` if given (a
    subclass that also records elsewhere, for one sequence with SQLAlchemy's events)."""
    log = DriverLog() if log is None else log
    loggers: dict[int, Any] = {}

    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection

        def logged(query: Any) -> None:
            log.record(driver, query.query)

        loggers[id(driver)] = logged
        driver.add_query_logger(logged)

    def on_checkin(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is None:
            return
        driver = dbapi_connection.driver_connection
        logged = loggers.pop(id(driver), None)
        if logged is not None:
            driver.remove_query_logger(logged)

    engine = database.engine.sync_engine
    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    try:
        yield log
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "checkin", on_checkin)
