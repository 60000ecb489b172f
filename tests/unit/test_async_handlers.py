"""No request of any process hops to a thread pool on its way through FastAPI.

FastAPI awaits a dependency or an endpoint written ``async def`` on the event loop; a plain
``def`` (a function, a class used as a dependency: its ``__init__``, a generator) it runs in a
worker thread instead (``run_in_threadpool``), and Starlette does the same with a plain ``def``
exception handler. Each hop costs a thread hand-off both ways, for code that does no blocking
I/O, so every callable FastAPI runs per request is a coroutine function or an async generator.

The check builds every process's app as it is served (no database, nothing opened) and walks
each route's dependency tree, the router-level dependencies included. Something that truly
blocks belongs off the loop by an explicit ``asyncio.to_thread``/``run_in_threadpool`` inside
an async callable, or in :data:`EXEMPT` with its reason. The portal's ``/static`` files are a
mounted ``StaticFiles`` app, not a route: its file-system reads are the one thread hop left,
and on purpose.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts

#: every process that serves HTTP through FastAPI (the gateway: its own paths)
PACKAGES = (
    "panjereh.catalog",
    "panjereh.identity",
    "panjereh.requests",
    "panjereh.inquiry_broker",
    "panjereh.portal",
    "panjereh.gateway",
)

#: ``module.qualname`` of a callable allowed to run in the thread pool, and why
EXEMPT: dict[str, str] = {}


def _plain(call: Callable[..., Any]) -> Any:
    while isinstance(call, functools.partial):
        call = call.func
    return inspect.unwrap(call)


def _name(call: Callable[..., Any]) -> str:
    target = _plain(call)
    if not (inspect.isfunction(target) or inspect.ismethod(target) or inspect.isclass(target)):
        target = type(target)
    return f"{target.__module__}.{target.__qualname__}"


def runs_on_the_loop(call: Callable[..., Any]) -> bool:
    """True when FastAPI (or Starlette) awaits ``call`` instead of running it in a thread."""
    target = _plain(call)
    if inspect.isclass(target):
        return False  # its __init__ runs in the thread pool
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = _plain(type(target).__call__)  # a callable instance (e.g. HTTPBearer)
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _dependants(child)


def thread_hops(app: FastAPI) -> list[str]:
    """``<route>: <callable>`` for each callable FastAPI would run in the thread pool."""
    found: list[str] = []
    for context in iter_route_contexts(app.routes):
        mounted = getattr(context.original_route, "app", None)
        if isinstance(mounted, FastAPI):
            found += [f"{context.path}{hop}" for hop in thread_hops(mounted)]
            continue
        dependant: Dependant | None = getattr(context, "dependant", None)
        if dependant is None:
            continue  # FastAPI's own documents, mounted static files
        route = f"{','.join(sorted(context.methods or ()))} {context.path}"
        for node in _dependants(dependant):
            if node.call is None or runs_on_the_loop(node.call):
                continue
            name = _name(node.call)
            if name not in EXEMPT:
                kind = "endpoint" if node is dependant else "dependency"
                found.append(f"{route}: {kind} {name} runs in the thread pool")
    for error, handler in app.exception_handlers.items():
        if not runs_on_the_loop(handler) and _name(handler) not in EXEMPT:
            label = getattr(error, "__name__", str(error))
            found.append(f"handler of {label}: {_name(handler)} runs in the thread pool")
    return sorted(set(found))


def served_app(package: str) -> FastAPI:
    """``package``'s app as its process builds it (the gateway: the FastAPI app inside)."""
    config = importlib.import_module(f"{package}.config")
    main = importlib.import_module(f"{package}.main")
    app = main.create_app(config.Settings(environment="dev"))
    app = getattr(app, "own", app)
    assert isinstance(app, FastAPI)
    return app


@pytest.mark.parametrize("package", PACKAGES)
def test_no_request_hops_to_a_thread(package: str) -> None:
    hops = thread_hops(served_app(package))
    assert not hops, "make these async def (nothing here may block):\n" + "\n".join(hops)


def test_every_exemption_is_still_in_use() -> None:
    """An exemption outlives nothing: each names a callable some app still runs."""
    names = {
        _name(node.call)
        for package in PACKAGES
        for context in iter_route_contexts(served_app(package).routes)
        if getattr(context, "dependant", None) is not None
        for node in _dependants(context.dependant)
        if node.call is not None
    }
    assert set(EXEMPT) <= names


class _Plain:
    def __init__(self, request: Request) -> None:
        self.path = request.url.path


def _sync_dependency() -> int:
    return 1


def _sync_generator() -> Iterator[int]:
    yield 1


async def _async_dependency(
    number: Annotated[int, Depends(_sync_dependency)],
) -> int:
    return number


def test_a_planted_thread_hop_is_named() -> None:
    """Sync functions, generators, classes and handlers are caught, nested or not."""
    app = FastAPI()

    @app.get("/nested")
    async def nested(number: Annotated[int, Depends(_async_dependency)]) -> int:
        return number

    @app.get("/class", dependencies=[Depends(_sync_generator)])
    async def with_class(plain: Annotated[_Plain, Depends(_Plain)]) -> str:
        return plain.path

    @app.get("/sync")
    def sync_endpoint() -> int:
        return 1

    @app.get("/fine")
    async def fine() -> int:
        return 1

    def on_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({}, status_code=500)

    app.add_exception_handler(ValueError, on_error)
    hops = thread_hops(app)
    here = __name__
    assert hops == sorted(
        [
            f"GET /nested: dependency {here}._sync_dependency runs in the thread pool",
            f"GET /class: dependency {here}._sync_generator runs in the thread pool",
            f"GET /class: dependency {here}._Plain runs in the thread pool",
            f"GET /sync: endpoint {here}.test_a_planted_thread_hop_is_named.<locals>"
            ".sync_endpoint runs in the thread pool",
            f"handler of ValueError: {here}.test_a_planted_thread_hop_is_named.<locals>"
            ".on_error runs in the thread pool",
        ]
    )
