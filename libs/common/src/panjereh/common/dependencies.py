"""Typed dependencies every service's endpoints share.

``session: DbSession`` gives the endpoint one unit of work (:meth:`Database.transaction`) on
the database its setup opened (``app.state.database``). Its scope is the endpoint function:
the transaction commits *before* the response is sent, so a client never sees a success for a
change that then failed to commit, and it is over before a streamed or long-polling response
goes on waiting (no pooled connection held across the wait).

An endpoint that must call another system does not take ``DbSession``: it takes
:data:`DatabaseDep` and opens short units of work around the call (claim → call → record).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Database


def get_database(request: Request) -> Database:
    database = getattr(request.app.state, "database", None)
    if not isinstance(database, Database):
        msg = "no database: open it in the service's setup with resources.database(settings)"
        raise RuntimeError(msg)
    return database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_database(request).transaction() as session:
        yield session


#: One unit of work per request, committed before the response is sent.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
#: The database itself, for endpoints that open their own short units of work.
DatabaseDep = Annotated[Database, Depends(get_database)]
