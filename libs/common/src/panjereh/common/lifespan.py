"""A service's resources, opened in order and closed in reverse, whatever fails.

``create_service_app(setup=...)`` calls ``setup(app, resources)`` at start-up; ``setup`` opens
what the process needs through :class:`Resources` and returns. At shutdown (or when a later
step of ``setup`` fails) everything opened so far is closed, last opened first:

.. code-block:: python

    async def setup(app: FastAPI, resources: Resources) -> None:
        database = resources.database(settings)
        relay = await resources.start(OutboxRelay(...))
        await resources.enter(install_auth(app, settings))
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI

from panjereh.common.db import Database
from panjereh.common.health import ReadinessCheck
from panjereh.common.settings import ServiceSettings

T = TypeVar("T")


class Component(Protocol):
    """Anything started and stopped with the process (relays, consumers, workers)."""

    async def start(self) -> None: ...

    async def stop(self) -> Any: ...


C = TypeVar("C", bound=Component)


class Resources:
    """What ``setup`` opens; closed in reverse order by the kernel's lifespan."""

    def __init__(self, app: FastAPI, stack: contextlib.AsyncExitStack) -> None:
        self.app = app
        self._stack = stack

    async def enter(self, context: contextlib.AbstractAsyncContextManager[T]) -> T:
        """Enter an async context manager; it is exited at shutdown."""
        return await self._stack.enter_async_context(context)

    async def start(self, component: C) -> C:
        """``await component.start()`` now, ``await component.stop()`` at shutdown."""
        await component.start()
        self._stack.push_async_callback(component.stop)
        return component

    def on_close(self, callback: Callable[[], Awaitable[Any]]) -> None:
        """Await ``callback()`` at shutdown (in reverse order with everything else)."""
        self._stack.push_async_callback(callback)

    def ready_when(self, name: str, check: ReadinessCheck) -> None:
        """``/readyz`` reports ``name`` ready only while ``check()`` passes."""
        self.app.state.readiness.add(name, check)

    def database(self, settings: ServiceSettings) -> Database:
        """The service's database: on ``app.state.database``, in readiness, disposed at the end."""
        database = Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            trace_statements=settings.trace_statements,
        )
        self.app.state.database = database
        self.ready_when("database", database.ping)
        self.on_close(database.dispose)
        return database


Setup = Callable[[FastAPI, Resources], Awaitable[None]]
