"""Canonical JSON: one byte string per value, so that hashes and signatures are reproducible.

Keys sorted, no insignificant whitespace, UTF-8 (Persian stays as written), times as RFC 3339
UTC with microseconds, UUIDs in their hyphenated form. Floats are not used in what is hashed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    msg = f"not canonically serialisable: {type(value).__name__}"
    raise TypeError(msg)


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    ).encode()
