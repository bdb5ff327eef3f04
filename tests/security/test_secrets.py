"""Secrets a step prints never reach what bcce stores or shows: artifacts, run state,
events, the next step's inputs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import base_env, bcce

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
DEPLOY_TOKEN = "hunter2-but-longer-and-secret"


def test_printed_credentials_are_masked_everywhere_they_are_kept(tmp_path: Path) -> None:
    (tmp_path / "wf.yml").write_text(
        textwrap.dedent(
            f"""\
            version: 1
            workflow: leaky
            env:
              DEPLOY_TOKEN: {DEPLOY_TOKEN}
            steps:
              - id: leak
                type: cmd
                command: python3 -c "import os, sys; print('{AWS_KEY}', '{GITHUB_TOKEN}',
                  os.environ['DEPLOY_TOKEN']); print('{GITHUB_TOKEN}', file=sys.stderr)"
              - id: echo
                type: cmd
                command: echo "{{{{ steps.leak.output }}}}"
              - id: fail
                type: cmd
                command: python3 -c "raise SystemExit('{AWS_KEY}')"
            """
        )
    )
    result = bcce(
        "workflow", "run", str(tmp_path / "wf.yml"), "--json", env=base_env(), cwd=tmp_path
    )
    assert result.code == 1, result.err
    run_dir = Path(json.loads(result.out.splitlines()[0])["run_dir"])
    stored = {
        str(p.relative_to(run_dir)): p.read_text(errors="replace")
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != "workflow.json"  # the workflow as written
    }
    assert stored["leak/stdout.txt"].count("[REDACTED") == 3
    assert "[REDACTED" in stored["echo/stdout.txt"]
    shown = result.out + result.err
    for secret in (AWS_KEY, GITHUB_TOKEN, DEPLOY_TOKEN):
        for name, text in stored.items():
            assert secret not in text, f"{secret} in {name}"
        assert secret not in shown
