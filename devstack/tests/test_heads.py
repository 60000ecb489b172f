"""Reading the migrations' head without Alembic (a warm start skips migrating)."""

from __future__ import annotations

from pathlib import Path

import pytest

from panjereh.devstack.heads import script_heads, versions_dir
from panjereh.devstack.stack import SERVICES


@pytest.mark.parametrize("package", [c.package for c in SERVICES])
def test_every_service_has_one_readable_head(package: str) -> None:
    folder = versions_dir(package)
    assert folder is not None
    heads = script_heads(folder)
    assert heads is not None
    # the scripts are numbered in order: the last one is the head
    assert heads == {max(p.name.split("_")[0] for p in folder.glob("0*.py"))}


def _script(folder: Path, name: str, revision: str, down: str) -> None:
    (folder / f"{name}.py").write_text(
        f'revision: str = "{revision}"\ndown_revision: str | None = {down}\n'
    )


def test_branches_merges_and_unreadable_scripts(tmp_path: Path) -> None:
    _script(tmp_path, "a", "0001", "None")
    _script(tmp_path, "b", "0002", '"0001"')
    _script(tmp_path, "c", "0003", '"0001"')
    assert script_heads(tmp_path) == {"0002", "0003"}
    _script(tmp_path, "d", "0004", '("0002", "0003")')
    assert script_heads(tmp_path) == {"0004"}
    (tmp_path / "e.py").write_text("revision = make_revision()\n")
    assert script_heads(tmp_path) is None, "unreadable: migrate as before"
    assert script_heads(tmp_path / "missing") is None
