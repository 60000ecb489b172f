"""checkov on the rendered overlays and the Dockerfiles; hadolint on the Dockerfiles."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.test_images import IMAGES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHECKOV_CONFIG = DEPLOY / "checkov.yaml"
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))


def checkov_env() -> dict[str, str]:
    # no calls home: no guideline download, no version check, no telemetry
    return {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",
        "CHECKOV_SKIP_DOWNLOAD": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    }


class TestCheckov:
    def test_checkov_reports_no_failed_check(self, rendered, deploy_tool, tmp_path):
        checkov = deploy_tool("checkov")
        files = [str(item.path) for item in rendered.values()]
        files += [str(path) for path in DOCKERFILES]
        command = [str(checkov), "--config-file", str(CHECKOV_CONFIG), "--output", "json"]
        for file in files:
            command += ["--file", file]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, env=checkov_env(), timeout=600
        )
        reports = json.loads(result.stdout)
        reports = reports if isinstance(reports, list) else [reports]
        by_framework = {report["check_type"]: report for report in reports}
        assert set(by_framework) == {"kubernetes", "dockerfile"}, result.stderr[-2000:]
        failed = [
            f"{check['check_id']} {check['resource']} ({check['file_path']})"
            for report in reports
            for check in report["results"]["failed_checks"]
        ]
        assert failed == []
        for report in reports:
            # the scans saw the manifests: hundreds of checks passed in each framework
            assert report["summary"]["passed"] > 100, report["check_type"]
        assert result.returncode == 0

    def test_every_skipped_check_is_justified_in_the_readme(self):
        skipped = yaml.safe_load(CHECKOV_CONFIG.read_text())["skip-check"]
        assert skipped
        readme = (DEPLOY / "README.md").read_text()
        section = readme.split("## Checks we skip", 1)[1].split("\n## ", 1)[0]
        for check in skipped:
            line = next((line for line in section.splitlines() if check in line), "")
            assert len(line) > 80, f"{check} is skipped but not justified in deploy/README.md"


class TestHadolint:
    def test_every_dockerfile_passes_hadolint(self, deploy_tool):
        hadolint = deploy_tool("hadolint")
        # one per component image (test_images.IMAGES), the portal's included
        assert [path.name for path in DOCKERFILES] == sorted(
            image.dockerfile.name for image in IMAGES
        )
        result = subprocess.run(
            [str(hadolint), "--failure-threshold", "info", *map(str, DOCKERFILES)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_hadolint_flags_a_root_image(self, deploy_tool, tmp_path):
        hadolint = deploy_tool("hadolint")
        bad = tmp_path / "bad.Dockerfile"
        bad.write_text("FROM python:latest\nUSER root\nRUN pip install uvicorn\n")
        result = subprocess.run(
            [str(hadolint), str(bad)], capture_output=True, text=True, check=False
        )
        assert result.returncode != 0
        assert re.search(r"DL3007|DL3002|DL3013", result.stdout)
