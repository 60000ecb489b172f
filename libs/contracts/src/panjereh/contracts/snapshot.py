"""The committed JSON-schema snapshot of every contract.

A contract change shows up in review as a diff of ``libs/contracts/schemas/events.json``;
the test ``test_snapshot_is_current`` fails until the snapshot is refreshed on purpose:

    python -m panjereh.contracts.snapshot --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from panjereh.contracts.registry import ALL_EVENTS, PRODUCERS

#: ``libs/contracts/`` (the package is installed editable from the workspace).
CONTRACTS_ROOT = Path(__file__).resolve().parents[3]
SNAPSHOT_PATH = CONTRACTS_ROOT / "schemas" / "events.json"


def build() -> dict[str, Any]:
    """Every contract by type: its topic, producer and JSON Schema (by alias, as on the wire)."""
    return {
        event.event_type: {
            "name": event.__name__,
            "topic": event.topic,
            "producer": PRODUCERS[event],
            "schema": event.model_json_schema(by_alias=True),
        }
        for event in sorted(ALL_EVENTS, key=lambda event: event.event_type)
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="refresh the committed snapshot")
    args = parser.parse_args(argv)
    current = render(build())
    if args.write:
        SNAPSHOT_PATH.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT_PATH.write_text(current, encoding="utf-8")
        return 0
    if not SNAPSHOT_PATH.exists() or SNAPSHOT_PATH.read_text(encoding="utf-8") != current:
        sys.stderr.write(
            "contract snapshot is stale: run python -m panjereh.contracts.snapshot --write\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
