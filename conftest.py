from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["panjereh.common.testing.plugin", "panjereh.devstack.pytest_plugin"]


def pytest_configure(config: pytest.Config) -> None:
    """Give each checkout its own temporary root.

    pytest's default root is shared by every run of one user and prunes older runs' folders,
    which pulls the data directory from under an embedded PostgreSQL of a concurrent run from
    another checkout. A root named after this checkout keeps runs of different checkouts apart.
    """
    if config.option.basetemp is None:
        digest = hashlib.sha256(str(config.rootpath).encode()).hexdigest()[:10]
        config.option.basetemp = str(Path(tempfile.gettempdir()) / f"panjereh-pytest-{digest}")
