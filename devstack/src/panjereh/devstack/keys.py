"""The local stack's own keys: made once per data directory, kept beside its databases.

A service that is given no key in dev generates one when its process starts. That is enough
for one process, not for a stack whose data outlives it: the inquiry broker's audit chain and
signed answers are kept in PostgreSQL under ``var/``, so a broker started again (``make run``
a second time, a replica added, a crashed process restarted) must hold the keys that wrote
them, and every replica must hold the same ones, as production's secret gives them.

The file is readable by its owner only. Keys named in the environment win over it, and none
of this is for production, whose keys come from its secrets (Settings refuse empty ones there).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from panjereh.common import jwk


def _answer_signing_key() -> str:
    return jwk.private_pem(jwk.generate_private_key())


def _audit_chain_key() -> str:
    return secrets.token_urlsafe(32)


#: Per process environment prefix: each setting's name and how to make its value.
KEYS: Mapping[str, Mapping[str, Callable[[], str]]] = {
    "PANJEREH_INQUIRY_BROKER_": {
        "SIGNING_PRIVATE_KEY": _answer_signing_key,
        "AUDIT_CHAIN_KEY": _audit_chain_key,
    },
}


def stack_keys(var_dir: Path) -> dict[str, str]:
    """Environment variables of the stack's keys (``PANJEREH_INQUIRY_BROKER_AUDIT_CHAIN_KEY``,
    ...): read from ``var_dir/keys.json``; the ones it lacks are made and written there."""
    path = var_dir / "keys.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {prefix + name: make for prefix, names in KEYS.items() for name, make in names.items()}
    missing = {name: make() for name, make in wanted.items() if not stored.get(name)}
    if missing:
        stored |= missing
        var_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(stored, file, indent=2)
        temporary.replace(path)
    return {name: stored[name] for name in wanted}
