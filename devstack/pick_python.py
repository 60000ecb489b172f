"""Print the interpreter that `make install` builds `.venv` on.

Among the executables named like the bootstrap interpreter's version (``python3.11`` for a 3.11
bootstrap) on ``PATH``, the first whose ``libpython`` is linked into the executable wins; the
bootstrap interpreter itself when there is none. Standard library only: it runs before any
environment exists.

Why: CPython built with ``--enable-shared`` calls into its own library through the PLT and pays
for semantic interposition on every call between the interpreter's functions. Distribution builds
that link ``libpython`` statically into ``/usr/bin/python3.x`` (Debian, Ubuntu) and the official
``python:3.x`` images run the same bytecode with about 15 % less CPU per login than a
``--enable-shared`` build without PGO (``docs/profiling.md``, "The interpreter's build"). Only the
same minor version is taken, so the lock's markers and wheels stay the ones the bootstrap would
have had. ``make install PYTHON_RUNTIME=/path/to/python`` overrides the choice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Run in each candidate: its real path, its version, and whether a libpython shared object is
# mapped into it (the --enable-shared builds).
_PROBE = (
    "import os, sys\n"
    "with open('/proc/self/maps') as maps:\n"
    "    shared = any('/libpython' in line for line in maps)\n"
    "print(os.path.realpath(sys.executable), '%d.%d' % sys.version_info[:2], int(shared))\n"
)


def _probe(executable: str) -> tuple[str, str, bool] | None:
    try:
        done = subprocess.run(  # noqa: S603  (the argument list is fixed but for PATH's entry)
            [executable, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        path, version, shared = done.stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return path, version, shared == "1"


def _on_path(name: str) -> list[str]:
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            found.append(str(candidate))
    return found


def pick(bootstrap: str) -> str:
    """The interpreter to build the environment on (a real path), given the bootstrap's."""
    own = _probe(shutil.which(bootstrap) or bootstrap)
    if own is None:
        return bootstrap
    own_path, version, own_shared = own
    if not own_shared or not sys.platform.startswith("linux"):
        return own_path
    for candidate in _on_path(f"python{version}"):
        probed = _probe(candidate)
        if probed is not None and probed[1] == version and not probed[2]:
            return probed[0]
    return own_path


if __name__ == "__main__":
    sys.stdout.write(pick(sys.argv[1] if len(sys.argv) > 1 else sys.executable) + "\n")
