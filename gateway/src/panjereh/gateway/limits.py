"""Token buckets per route class, per client address and per caller, held in this process.

Each replica keeps its own buckets (docs/gateway.md, "Several replicas"): behind a load
balancer that spreads callers evenly, N replicas admit up to N times a bucket's rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from panjereh.gateway.config import Bucket, ClassLimits, RouteClass

#: Buckets kept before full ones (callers quiet long enough to have refilled) are forgotten.
MAX_BUCKETS = 200_000


class TokenBuckets:
    """``take(key, bucket)``: 0 when a request is admitted, else seconds until one would be."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_buckets: int = MAX_BUCKETS
    ) -> None:
        self._clock = clock
        self._max = max_buckets
        # key → [tokens left, time of the last refill]
        self._state: dict[object, list[float]] = {}

    def take(self, key: object, bucket: Bucket) -> float:
        now = self._clock()
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self._max:
                self._forget_full(now)
            self._state[key] = [bucket.burst - 1.0, now]
            return 0.0
        tokens = min(float(bucket.burst), state[0] + (now - state[1]) * bucket.per_second)
        state[1] = now
        if tokens >= 1.0:
            state[0] = tokens - 1.0
            return 0.0
        state[0] = tokens
        return (1.0 - tokens) / bucket.per_second

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they hold nothing a new bucket would not.

        Without the bucket's rate at hand, one idle for a minute counts as full; if that frees
        nothing (a flood of distinct keys), every bucket is dropped rather than grow without
        bound: the flood is then limited per replica by the per-IP buckets that refill.
        """
        stale = [key for key, (_, stamp) in self._state.items() if now - stamp > 60.0]
        for key in stale:
            del self._state[key]
        if len(self._state) >= self._max:
            self._state.clear()

    def __len__(self) -> int:
        return len(self._state)


class RateLimiter:
    """The platform's limits: per route class, a bucket per client address and per caller."""

    def __init__(
        self,
        limits: Mapping[RouteClass, ClassLimits],
        *,
        ip_factor: float = 1.0,
        buckets: TokenBuckets | None = None,
    ) -> None:
        self._buckets = buckets or TokenBuckets()
        self._per_ip: dict[RouteClass, Bucket] = {}
        self._per_client: dict[RouteClass, Bucket] = {}
        for route_class, limit in limits.items():
            if limit.per_ip is not None:
                self._per_ip[route_class] = Bucket(
                    per_second=limit.per_ip.per_second * ip_factor,
                    burst=max(1, math.ceil(limit.per_ip.burst * ip_factor)),
                )
            if limit.per_client is not None:
                self._per_client[route_class] = limit.per_client

    def for_address(self, route_class: RouteClass, address: str) -> float:
        bucket = self._per_ip.get(route_class)
        if bucket is None:
            return 0.0
        return self._buckets.take((route_class, 0, address), bucket)

    def for_caller(self, route_class: RouteClass, caller: str) -> float:
        bucket = self._per_client.get(route_class)
        if bucket is None:
            return 0.0
        return self._buckets.take((route_class, 1, caller), bucket)


def retry_after(wait: float) -> str:
    """``Retry-After`` in whole seconds, never 0 (a client would retry at once)."""
    return str(max(1, math.ceil(wait)))
