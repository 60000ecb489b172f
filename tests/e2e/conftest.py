"""The whole platform started as ``make run`` starts it, once per e2e session."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from panjereh.devstack.testing import RunningStack, start_stack, stop_stack


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    directory = tmp_path_factory.mktemp("stack")
    stack = start_stack(directory / "var", directory / "stack.out")
    try:
        yield stack
    finally:
        stop_stack(stack)


@pytest.fixture
def gateway(platform: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway, timeout=10.0) as client:
        yield client
