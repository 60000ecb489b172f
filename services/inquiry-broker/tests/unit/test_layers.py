"""The shape of the broker's service layer (STYLE.md, "Conventions").

The repository-wide rules (no web framework and no ``commit()`` in service modules, routers
never import a repository) are checked for every service by ``tests/unit/test_architecture.py``;
these are the broker's own: one module per use-case family, reached by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src/panjereh/inquiry_broker"


def test_the_service_layer_is_a_package_of_use_case_modules() -> None:
    assert not (PACKAGE / "service.py").exists()
    modules = {path.stem for path in (PACKAGE / "service").glob("*.py")}
    assert modules >= {"asking", "answers", "delivery", "sweeping", "registry", "tracker"}


def test_the_service_package_reexports_nothing() -> None:
    tree = ast.parse((PACKAGE / "service/__init__.py").read_text())
    assert [type(node) for node in tree.body] == [ast.Expr]  # its docstring only
