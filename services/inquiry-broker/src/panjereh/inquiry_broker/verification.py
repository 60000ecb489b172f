"""Access tokens verified once per token, not once per request.

Every call of a machine client (identity, the requests service) carries the same token until it
expires; checking its ES256 signature again on each inquiry costs more CPU than the rest of a
cached read. :class:`RememberingTokenVerifier` is the kernel's verifier that remembers each
token it accepted, with the principal it names, for at most ``remember_seconds`` and never past
the token's ``exp``. A refused token is not remembered: it is checked again each time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from panjereh.common.auth import Principal, TokenVerifier
from panjereh.common.settings import ServiceSettings

#: The longest a verdict is reused (the gateway's edge cache uses the same bound).
REMEMBER_SECONDS = 60.0
#: Distinct tokens remembered at most; past that the memory starts again (machine clients are
#: few, citizens' tokens are not sent to the broker).
CAPACITY = 10_000


class RememberingTokenVerifier(TokenVerifier):
    """The kernel's :class:`TokenVerifier`, remembering accepted tokens until they expire."""

    def __init__(
        self,
        *,
        remember_seconds: float = REMEMBER_SECONDS,
        capacity: int = CAPACITY,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.remember_seconds = remember_seconds
        self.capacity = capacity
        #: token → (principal, monotonic time until which it stands)
        self._accepted: dict[str, tuple[Principal, float]] = {}
        #: signature checks actually made, for tests
        self.checks = 0

    async def verify(self, token: str) -> Principal:
        now = time.monotonic()
        remembered = self._accepted.get(token)
        if remembered is not None:
            if now < remembered[1]:
                return remembered[0]
            del self._accepted[token]
        self.checks += 1
        principal = await super().verify(token)
        lifetime = self.remember_seconds
        if principal.expires_at is not None:
            lifetime = min(lifetime, principal.expires_at.timestamp() - time.time())
        if lifetime > 0 and self.capacity > 0:
            if len(self._accepted) >= self.capacity:
                self._accepted.clear()  # cheaper than LRU bookkeeping on every hit
            self._accepted[token] = (principal, now + lifetime)
        return principal


@asynccontextmanager
async def install_remembering_auth(
    app: FastAPI, settings: ServiceSettings
) -> AsyncIterator[RememberingTokenVerifier]:
    """Like the kernel's ``install_auth``, with a :class:`RememberingTokenVerifier`."""
    verifier = RememberingTokenVerifier.from_settings(settings)
    assert isinstance(verifier, RememberingTokenVerifier)  # from_settings builds ``cls``
    app.state.token_verifier = verifier
    try:
        yield verifier
    finally:
        await verifier.aclose()
