"""Rules that keep the services apart, enforced here rather than remembered."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "catalog": ROOT / "services/catalog/src/panjereh/catalog",
    "identity": ROOT / "services/identity/src/panjereh/identity",
    "requests": ROOT / "services/requests/src/panjereh/requests",
    "inquiry_broker": ROOT / "services/inquiry-broker/src/panjereh/inquiry_broker",
    "gateway": ROOT / "gateway/src/panjereh/gateway",
}
LIBS = {"common": ROOT / "libs/common/src/panjereh/common"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_imports_no_other_service(service: str) -> None:
    others = {f"panjereh.{name}" for name in SERVICES if name != service}
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(SERVICES[service])
        for module in imported_modules(path)
        if any(module == other or module.startswith(other + ".") for other in others)
    ]
    assert offenders == []


def test_the_shared_kernel_imports_no_service() -> None:
    services = {f"panjereh.{name}" for name in SERVICES}
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(LIBS["common"])
        for module in imported_modules(path)
        if any(module == s or module.startswith(s + ".") for s in services)
    ]
    assert offenders == []


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_modules_do_not_import_the_web_framework(service: str) -> None:
    """Business logic (service.py, repository.py) stays free of FastAPI."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in python_files(SERVICES[service])
        if path.name in {"service.py", "repository.py"}
        and any(
            m == "fastapi" or m.startswith(("fastapi.", "starlette"))
            for m in imported_modules(path)
        )
    ]
    assert offenders == []


def test_nothing_imports_http_exception() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in [*SERVICES.values(), *LIBS.values()]
        for path in python_files(folder)
        if "HTTPException" in path.read_text() and path.name != "errors.py"
    ]
    assert offenders == []
