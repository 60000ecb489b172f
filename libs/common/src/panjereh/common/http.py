"""Outbound HTTP for services: an ``httpx.AsyncClient`` that refuses to call out from inside
an open database transaction.

A call to another system can take seconds (or its whole timeout); made while a transaction is
open it holds a pooled connection, and any row locks, for that long, and one slow agency or
SMS provider then stalls every request that needs those rows. The platform's shape is
**claim → call outside the transaction → record**. This client makes the rule impossible to
break by accident: a request sent while :func:`panjereh.common.db.in_transaction` is true
raises :class:`NetworkCallInTransaction` before anything leaves the process.
"""

from __future__ import annotations

from typing import Any

import httpx

from panjereh.common.db import in_transaction


class NetworkCallInTransaction(RuntimeError):
    """An outbound call was attempted while the current task held a database transaction."""


async def _refuse_inside_transactions(request: httpx.Request) -> None:
    if in_transaction():
        msg = (
            f"{request.method} {request.url.host}: no network call while a database "
            "transaction is open (claim, commit, call, then record)"
        )
        raise NetworkCallInTransaction(msg)


def outbound_client(**options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` (same options) that enforces "no network in a transaction".

    Use it for every call to another system: agencies, the inquiry broker, SMS providers.
    """
    hooks: dict[str, list[Any]] = {
        key: list(value) for key, value in options.pop("event_hooks", {}).items()
    }
    hooks.setdefault("request", []).insert(0, _refuse_inside_transactions)
    return httpx.AsyncClient(event_hooks=hooks, **options)
