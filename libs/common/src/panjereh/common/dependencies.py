"""Typed dependencies every service's endpoints share.

``session: DbSession`` gives the endpoint one unit of work (:meth:`Database.transaction`) on
the database its setup opened (``app.state.database``). Its scope is the endpoint function:
the transaction commits *before* the response is sent, so a client never sees a success for a
change that then failed to commit, and it is over before a streamed or long-polling response
goes on waiting (no pooled connection held across the wait).

``reading: DbReading`` gives an endpoint that only reads one read-only unit
(:meth:`Database.reading`): its statements run without ``BEGIN``/``COMMIT`` and anything but
a plain read is refused. For a read whose statements need not share one snapshot.

An endpoint that must call another system does not take ``DbSession``: it takes
:data:`DatabaseDep` and opens short units of work around the call (claim → call → record).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Database
from panjereh.common.errors import InvalidIdempotencyKey, Text
from panjereh.common.fields import field_error
from panjereh.common.idempotency import MAX_KEY_LENGTH


def _database_of(request: Request) -> Database:
    database = getattr(request.app.state, "database", None)
    if not isinstance(database, Database):
        msg = "no database: open it in the service's setup with resources.database(settings)"
        raise RuntimeError(msg)
    return database


# Every dependency here is ``async def``, even with nothing to await: FastAPI runs a plain
# ``def`` dependency in a worker thread, a hand-off both ways on every request.
async def get_database(request: Request) -> Database:
    return _database_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with _database_of(request).transaction() as session:
        yield session


async def get_reading(request: Request) -> AsyncIterator[AsyncSession]:
    async with _database_of(request).reading() as session:
        yield session


#: One unit of work per request, committed before the response is sent.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
#: One read-only unit per request (no ``BEGIN``/``COMMIT``; writes refused), closed before the
#: response is sent.
DbReading = Annotated[AsyncSession, Depends(get_reading, scope="function")]
#: The database itself, for endpoints that open their own short units of work.
DatabaseDep = Annotated[Database, Depends(get_database)]


async def _idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="repeat a creating request safely: same key and body, same answer",
        ),
    ] = None,
) -> str | None:
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidIdempotencyKey(
            Text(
                f"کلید یکتایی باید ۱ تا {MAX_KEY_LENGTH} نویسه اسکی قابل چاپ باشد",
                f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            ),
            errors=[
                field_error(
                    "Idempotency-Key",
                    "invalid_idempotency_key",
                    fa=f"۱ تا {MAX_KEY_LENGTH} نویسه اسکی قابل چاپ",
                    en=f"1-{MAX_KEY_LENGTH} printable ASCII characters",
                )
            ],
        )
    return key


#: ``idempotency_key: IdempotencyKey`` in a creating endpoint: the validated header, or None.
IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]
