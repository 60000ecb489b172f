"""Rules that keep the platform's parts apart, enforced here rather than remembered.

Each rule runs on the real tree (no violations) and on a copy with a planted violation
(the rule must find it), so a rule that silently stopped working would fail here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.architecture import PACKAGES, RULES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_tree_keeps_the_rule(rule: str) -> None:
    assert RULES[rule](ROOT) == []


def test_every_package_is_checked() -> None:
    """A package added to the workspace must be added to the rules too."""
    sources = {package.source for package in PACKAGES}
    on_disk = {
        str(init.parent.relative_to(ROOT))
        for init in ROOT.glob("*/**/src/panjereh/*/__init__.py")
        if ".venv" not in init.parts and "devstack" not in init.parts
    }
    assert on_disk <= sources


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of every checked package's sources, to plant violations in."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package.source, tmp_path / package.source)
    shutil.copy(
        ROOT / "libs/common/src/panjereh/common/errors.py",
        tmp_path / "libs/common/src/panjereh/common/errors.py",
    )
    return tmp_path


def plant(tree: Path, path: str, code: str) -> None:
    target = tree / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(code)


PLANTED: list[tuple[str, str, str, str]] = [
    (
        "layers",
        "services/catalog/src/panjereh/catalog/leak.py",
        "from panjereh.identity.service import login\n",
        "imports panjereh.identity.service",
    ),
    (
        "layers",
        "libs/common/src/panjereh/common/leak.py",
        "import panjereh.devstack.embedded\n",
        "imports panjereh.devstack.embedded",
    ),
    (
        "layers",
        "libs/common/src/panjereh/common/leak.py",
        "from panjereh.contracts import access\n",
        "imports panjereh.contracts.access",
    ),
    (
        "layers",
        "libs/contracts/src/panjereh/contracts/leak.py",
        "from panjereh.common.errors import AppError\n",
        "imports panjereh.common.errors",
    ),
    (
        "layers",
        "libs/agency-sdk/src/panjereh/agency_sdk/leak.py",
        "from panjereh.common.db import Database\n",
        "imports panjereh.common.db",
    ),
    (
        "service modules",
        "services/catalog/src/panjereh/catalog/service/leak.py",
        "async def f(session):\n    await session.commit()\n",
        "calls commit()",
    ),
    (
        "service modules",
        "services/identity/src/panjereh/identity/repository.py",
        "from fastapi import Request\n",
        "imports fastapi",
    ),
    (
        "routers",
        "services/inquiry-broker/src/panjereh/inquiry_broker/router.py",
        "from panjereh.inquiry_broker.repository import InquiryRepository\n",
        "imports panjereh.inquiry_broker.repository",
    ),
    (
        "HTTPException",
        "services/requests/src/panjereh/requests/errors.py",
        "from fastapi import HTTPException\n",
        "uses HTTPException",
    ),
    (
        "outbound HTTP",
        "services/identity/src/panjereh/identity/leak.py",
        "import httpx\nclient = httpx.AsyncClient(timeout=5)\n",
        "use panjereh.common.http.outbound_client",
    ),
]


@pytest.mark.parametrize(("rule", "path", "code", "expected"), PLANTED)
def test_a_planted_violation_is_found(
    tree: Path, rule: str, path: str, code: str, expected: str
) -> None:
    check: Callable[[Path], list[str]] = RULES[rule]
    assert check(tree) == []
    plant(tree, path, code)
    violations = check(tree)
    assert any(path in v and expected in v for v in violations), violations
