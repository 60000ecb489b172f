"""`devstack/pick_python.py`: which interpreter `make install` builds `.venv` on.

The candidates are small scripts on a PATH of the test's own that answer the probe the way an
interpreter would (its real path, its version, whether a libpython shared object is mapped).
"""

from __future__ import annotations

import importlib.util
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "pick_python.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pick_python", _SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pick_python = _load()


def _interpreter(folder: Path, name: str, version: str, *, shared: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {path} {version} {int(shared)}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


SetPath = Callable[..., None]


@pytest.fixture
def path_of(monkeypatch: pytest.MonkeyPatch) -> SetPath:
    def set_path(*folders: Path) -> None:
        monkeypatch.setenv("PATH", ":".join(str(folder) for folder in folders))

    return set_path


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="linux only")


def test_a_shared_bootstrap_gives_way_to_a_static_build_of_its_version(
    tmp_path: Path, path_of: SetPath
) -> None:
    bootstrap = _interpreter(tmp_path / "pyenv", "python3", "3.11", shared=True)
    _interpreter(tmp_path / "pyenv", "python3.11", "3.11", shared=True)
    static = _interpreter(tmp_path / "usr", "python3.11", "3.11", shared=False)
    path_of(tmp_path / "pyenv", tmp_path / "usr")
    assert pick_python.pick(str(bootstrap)) == str(static)


def test_a_static_bootstrap_is_kept(tmp_path: Path, path_of: SetPath) -> None:
    bootstrap = _interpreter(tmp_path / "a", "python3", "3.12", shared=False)
    _interpreter(tmp_path / "b", "python3.12", "3.12", shared=False)
    path_of(tmp_path / "a", tmp_path / "b")
    assert pick_python.pick(str(bootstrap)) == str(bootstrap)


def test_another_minor_version_is_never_taken(tmp_path: Path, path_of: SetPath) -> None:
    bootstrap = _interpreter(tmp_path / "a", "python3", "3.11", shared=True)
    # named python3.11 but answering 3.13: not the bootstrap's version, so not taken
    _interpreter(tmp_path / "b", "python3.11", "3.13", shared=False)
    _interpreter(tmp_path / "c", "python3.13", "3.13", shared=False)
    path_of(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert pick_python.pick(str(bootstrap)) == str(bootstrap)


def test_a_candidate_that_fails_is_passed_over(tmp_path: Path, path_of: SetPath) -> None:
    bootstrap = _interpreter(tmp_path / "a", "python3", "3.11", shared=True)
    broken = tmp_path / "b" / "python3.11"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    static = _interpreter(tmp_path / "c", "python3.11", "3.11", shared=False)
    path_of(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert pick_python.pick(str(bootstrap)) == str(static)


def test_this_interpreter_probes_as_itself() -> None:
    probed = pick_python._probe(sys.executable)
    assert probed is not None
    path, version, _shared = probed
    assert Path(path) == Path(sys.executable).resolve()
    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"
