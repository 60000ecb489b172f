"""The platform's architecture rules, as checks over source trees.

Each rule is a function from a repository root to the list of violations it finds, so a test
can run it on the real tree and on a tree with a planted violation (proving it can fail).

Rules:

- **Layers.** Each package may import only the platform packages its layer allows:
  services import the kernel and the contracts, never each other; the kernel imports no
  service, no devstack and no domain (of the contracts only the event base,
  ``panjereh.contracts.events``); the contracts import nothing of the platform; the agency SDK
  only the contracts; the simulated agencies only the SDK and the contracts; the portal only
  the kernel (it reaches the platform through the gateway's public API, like any front end).
- **Service modules** (``service.py`` or a ``service/`` package, ``repository.py``): no web
  framework, and never ``commit()``: the unit of work belongs to the kernel's boundary.
- **Routers** never import a repository: one service call per endpoint.
- **Errors** are raised as ``AppError`` subclasses: nothing imports ``HTTPException`` except
  the two renderers, which turn the framework's into what their clients read: the kernel's
  (``panjereh/common/errors.py``: problem+json) and the portal's (``panjereh/portal/main.py``:
  an HTML error page).
- **Outbound HTTP** from a service uses ``panjereh.common.http.outbound_client`` (which
  refuses to call out inside a transaction); a bare ``httpx.AsyncClient(...)`` is allowed only
  in-process (``transport=...``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Package:
    name: str  # the import name, e.g. panjereh.catalog
    source: str  # the folder, relative to the repository root
    allowed: tuple[str, ...]  # platform packages it may import (besides itself)


KERNEL_EVENT_BASE = "panjereh.contracts.events"
_SERVICE_DEPENDENCIES = ("panjereh.common", "panjereh.contracts")

PACKAGES = (
    Package("panjereh.common", "libs/common/src/panjereh/common", (KERNEL_EVENT_BASE,)),
    Package("panjereh.contracts", "libs/contracts/src/panjereh/contracts", ()),
    Package(
        "panjereh.agency_sdk", "libs/agency-sdk/src/panjereh/agency_sdk", ("panjereh.contracts",)
    ),
    Package(
        "panjereh.agency_simulators",
        "agencies/simulators/src/panjereh/agency_simulators",
        ("panjereh.agency_sdk", "panjereh.contracts"),
    ),
    Package("panjereh.catalog", "services/catalog/src/panjereh/catalog", _SERVICE_DEPENDENCIES),
    Package("panjereh.identity", "services/identity/src/panjereh/identity", _SERVICE_DEPENDENCIES),
    Package("panjereh.requests", "services/requests/src/panjereh/requests", _SERVICE_DEPENDENCIES),
    Package(
        "panjereh.inquiry_broker",
        "services/inquiry-broker/src/panjereh/inquiry_broker",
        _SERVICE_DEPENDENCIES,
    ),
    Package("panjereh.gateway", "gateway/src/panjereh/gateway", _SERVICE_DEPENDENCIES),
    Package("panjereh.portal", "portal/src/panjereh/portal", ("panjereh.common",)),
)
SERVICES = tuple(p for p in PACKAGES if p.source.startswith(("services/", "gateway/")))
WEB_FRAMEWORK = ("fastapi", "starlette")


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # ``from panjereh.contracts import access`` imports panjereh.contracts.access
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def layer_violations(root: Path) -> list[str]:
    found: list[str] = []
    for package in PACKAGES:
        for path in python_files(root / package.source):
            for module in set(imported_modules(_parse(path))):
                if not module.startswith("panjereh.") or _within(module, package.name):
                    continue
                if any(_within(module, allowed) for allowed in package.allowed):
                    continue
                if module.count(".") > 1 and any(
                    allowed.startswith(module + ".") for allowed in package.allowed
                ):
                    continue  # ``from panjereh.contracts import events`` names a parent
                if module in {"panjereh.contracts"} and KERNEL_EVENT_BASE in package.allowed:
                    continue
                found.append(f"{path.relative_to(root)} imports {module}")
    return sorted(set(found))


def is_service_module(path: Path, package_root: Path) -> bool:
    relative = path.relative_to(package_root)
    return relative.name in {"service.py", "repository.py"} or relative.parts[0] in {
        "service",
        "repository",
    }


def service_module_violations(root: Path) -> list[str]:
    found: list[str] = []
    for package in SERVICES:
        package_root = root / package.source
        for path in python_files(package_root):
            if not is_service_module(path, package_root):
                continue
            tree = _parse(path)
            found += [
                f"{path.relative_to(root)} imports {module}"
                for module in set(imported_modules(tree))
                if any(_within(module, framework) for framework in WEB_FRAMEWORK)
            ]
            found += [
                f"{path.relative_to(root)}:{node.lineno} calls commit()"
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "commit"
            ]
    return sorted(set(found))


def router_violations(root: Path) -> list[str]:
    found: list[str] = []
    for package in SERVICES:
        package_root = root / package.source
        for path in python_files(package_root):
            relative = path.relative_to(package_root)
            if relative.name != "router.py" and relative.parts[0] != "router":
                continue
            found += [
                f"{path.relative_to(root)} imports {module}"
                for module in set(imported_modules(_parse(path)))
                if module.startswith(package.name + ".repository")
            ]
    return sorted(set(found))


def http_exception_violations(root: Path) -> list[str]:
    renderers = {
        root / "libs/common/src/panjereh/common/errors.py",
        root / "portal/src/panjereh/portal/main.py",
    }
    found: list[str] = []
    for package in PACKAGES:
        for path in python_files(root / package.source):
            if path in renderers:
                continue
            for node in ast.walk(_parse(path)):
                named = (
                    [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
                )
                if "HTTPException" in named or (
                    isinstance(node, ast.Attribute) and node.attr == "HTTPException"
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno} uses HTTPException")
    return sorted(set(found))


def outbound_http_violations(root: Path) -> list[str]:
    found: list[str] = []
    for package in SERVICES:
        if package.name == "panjereh.gateway":
            continue  # its upstreams are the platform's own services, not outside systems
        for path in python_files(root / package.source):
            for node in ast.walk(_parse(path)):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "AsyncClient"
                    and not any(keyword.arg == "transport" for keyword in node.keywords)
                ):
                    found.append(
                        f"{path.relative_to(root)}:{node.lineno} builds an httpx.AsyncClient; "
                        "use panjereh.common.http.outbound_client"
                    )
    return sorted(set(found))


RULES = {
    "layers": layer_violations,
    "service modules": service_module_violations,
    "routers": router_violations,
    "HTTPException": http_exception_violations,
    "outbound HTTP": outbound_http_violations,
}
