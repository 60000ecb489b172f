"""An agency installs the SDK alone: it must not import the platform's kernel or services.

The public contracts (pure data: payloads, topics, identifier rules) are its one declared
platform dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "src/panjereh/agency_sdk"


def test_the_sdk_imports_only_itself_and_its_declared_dependencies() -> None:
    offenders = []
    for path in sorted(SDK.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.startswith("panjereh.")
                and not name.startswith(("panjereh.agency_sdk", "panjereh.contracts"))
            ]
    assert offenders == []
