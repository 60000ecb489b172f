"""Identity's layers, enforced rather than remembered (STYLE.md; kernel consolidation rules)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src/panjereh/identity"
SERVICE_MODULES = sorted((PACKAGE / "service").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def calls_named(path: Path, name: str) -> list[int]:
    """Lines where ``<anything>.name(...)`` is called."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
    ]


def test_the_service_package_has_one_module_per_use_case_family() -> None:
    assert not (PACKAGE / "service.py").exists()
    names = {path.stem for path in SERVICE_MODULES}
    assert {"login", "tokens", "admin", "notifications", "housekeeping"} <= names
    # no re-exports: callers import the module they need
    init = ast.parse((PACKAGE / "service/__init__.py").read_text())
    assert [type(node) for node in init.body] == [ast.Expr]


@pytest.mark.parametrize("path", SERVICE_MODULES, ids=lambda path: path.name)
def test_service_modules_know_no_web_framework(path: Path) -> None:
    web = [m for m in imported_modules(path) if m.split(".")[0] in {"fastapi", "starlette"}]
    assert web == []


@pytest.mark.parametrize(
    "path", [*SERVICE_MODULES, PACKAGE / "repository.py"], ids=lambda path: path.name
)
def test_no_commit_below_the_boundary(path: Path) -> None:
    """Units of work commit (``Database.transaction``); use cases and queries never do."""
    assert calls_named(path, "commit") == []
    assert calls_named(path, "sessions") == []


def test_routers_never_reach_the_repository() -> None:
    assert "panjereh.identity.repository" not in imported_modules(PACKAGE / "router.py")


def test_no_hand_made_units_of_work_or_loops() -> None:
    """One mechanism each: the kernel's transaction boundary and its periodic worker."""
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        assert "keep_changes" not in source, path
        assert "session.begin()" not in source, path
        assert not re.search(r"while True:", source), path


def test_every_http_client_to_another_system_is_the_guarded_one() -> None:
    """``httpx.AsyncClient(...)`` only for the in-process JWKS reader (an ASGI transport)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "testing.py":
            continue  # test doubles' helpers
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AsyncClient"
            ):
                transports = [kw for kw in node.keywords if kw.arg == "transport"]
                assert transports, f"{path.name}:{node.lineno} builds a client to the network"
