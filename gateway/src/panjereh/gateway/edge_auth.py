"""Access tokens checked at the edge with the kernel's verifier (identity's JWKS).

The token is forwarded untouched: every service verifies it again (defence in depth); the
edge keeps unauthenticated traffic off protected routes and names the caller for its limits.
A verified token is remembered for a short while (never past its ``exp``), so a client's
burst costs one signature check, not one per request; a remembered token whose session identity
has since ended is refused all the same (``token_revoked``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from panjereh.common.auth import Principal, TokenInvalid, TokenMissing, TokenVerifier
from panjereh.common.errors import AppError


class EdgeAuthenticator:
    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._wall_clock = wall_clock
        # token → (principal, monotonic time until which the verdict stands)
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def caller(self, authorization: bytes | None) -> str:
        """The subject of a valid bearer token; ``TokenMissing``/``TokenInvalid``/
        ``TokenExpired``/``SigningKeysUnavailable`` (all problem+json errors) otherwise."""
        if authorization is None:
            raise TokenMissing
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenInvalid  # an Authorization header that is not a bearer token
        now = self._clock()
        cached = self._verified.get(token)
        if cached is not None:
            if now < cached[1]:
                await self._verifier.refuse_if_revoked(cached[0])
                return cached[0].subject
            del self._verified[token]
        principal = await self._verifier.verify(token)
        if self._cache_seconds > 0 and self._cache_size > 0:
            lifetime = self._cache_seconds
            if principal.expires_at is not None:
                lifetime = min(lifetime, principal.expires_at.timestamp() - self._wall_clock())
            if lifetime > 0:
                if len(self._verified) >= self._cache_size:
                    self._verified.clear()  # cheaper than LRU bookkeeping on every hit
                self._verified[token] = (principal, now + lifetime)
        return principal.subject

    async def optional_caller(self, authorization: bytes | None) -> str | None:
        """The subject when a valid bearer token came along, else ``None`` (public routes:
        the service decides what an invalid token means there)."""
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return None
        try:
            return await self.caller(authorization)
        except AppError:
            # invalid, expired, or the keys are out of reach: the caller counts as anonymous
            return None
