"""Fixtures of the deployment checks: the rendered overlays and the checker tools.

The overlays are rendered once per session with ``kubectl kustomize``. The checkers (checkov,
hadolint, kubernetes-validate) live in their own environment, ``.tools/deploy``, which
``make deploy-tools`` (a prerequisite of ``make test``) installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import missing_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = ("dev", "prod")
TOOLS_BIN = REPO_ROOT / ".tools" / "deploy" / "bin"


@dataclass
class Rendered:
    """One overlay rendered to plain manifests."""

    overlay: str
    path: Path
    docs: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        matches = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(matches) == 1, f"{self.overlay}: {len(matches)} {kind} named {name}"
        return matches[0]

    def names(self, kind: str) -> set[str]:
        return {doc["metadata"]["name"] for doc in self.of_kind(kind)}


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        missing_tool("kubectl is not installed: the overlays cannot be rendered")
    return found


@pytest.fixture(scope="session")
def rendered(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    out = tmp_path_factory.mktemp("rendered")
    result: dict[str, Rendered] = {}
    for overlay in OVERLAYS:
        manifest = subprocess.run(
            [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        path = out / f"{overlay}.yaml"
        path.write_text(manifest)
        docs = [doc for doc in yaml.safe_load_all(manifest) if doc]
        result[overlay] = Rendered(overlay, path, docs)
    return result


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    return rendered[request.param]


@pytest.fixture
def prod(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["prod"]


@pytest.fixture
def dev(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["dev"]


@pytest.fixture(scope="session")
def deploy_tool() -> Callable[[str], Path]:
    """``deploy_tool("checkov")`` is the path of that checker in ``.tools/deploy``."""

    def find(name: str) -> Path:
        path = TOOLS_BIN / name
        if not path.exists():
            message = f"{name} is not installed in .tools/deploy: run `make deploy-tools`"
            if os.environ.get("CI"):
                pytest.fail(message)  # CI installs it through `make test`: missing is a bug
            pytest.skip(message)
        return path

    return find
