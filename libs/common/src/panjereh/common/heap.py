"""The process's heap while it serves: start-up objects out of the cyclic collector's passes.

Modules, the app, its routes, models, pools and caches live as long as the process. Left in the
collector's oldest generation, every full pass walks them all again. Under load the objects of
requests in flight are promoted, and they trigger a full pass every few seconds. Such a pass
stopped a service for up to 266 ms and collected next to nothing (``docs/profiling.md``, ninth
round): every request in flight in that process waited for it.

:func:`long_lived_heap` freezes (:func:`gc.freeze`) what exists when the process starts serving,
so that a full pass walks only what was made since, and times every pass
(``panjereh_gc_pause_seconds``, by generation). Reference counting still frees frozen objects as
usual; only a reference cycle among them waits for :func:`gc.unfreeze`, at shutdown, so that a
process that builds apps one after another (a test run) can collect what the previous ones left.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

from panjereh.common.metrics import GC_PAUSES


class _PauseTimer:
    """A :data:`gc.callbacks` entry that times each pass, by generation."""

    def __init__(self) -> None:
        self._started = 0.0
        self._pauses = [GC_PAUSES.labels(str(generation)) for generation in range(3)]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pauses[info["generation"]].observe(time.perf_counter() - self._started)


@contextlib.contextmanager
def long_lived_heap() -> Iterator[None]:
    """Freeze the heap as it is and time the collector's passes until the block ends."""
    timer = _PauseTimer()
    gc.freeze()
    gc.callbacks.append(timer)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(timer)
        gc.unfreeze()
