"""The audit trail of a real run: complete, and any alteration of it is reported."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import base_env, bcce

WORKFLOW = textwrap.dedent(
    """\
    version: 1
    workflow: audited
    steps:
      - id: hello
        type: cmd
        command: echo hello
      - id: denied
        type: cmd
        command: rm -rf /
        policy:
          cmd_allowlist: [echo]
    """
)


@pytest.fixture
def audited(tmp_path: Path) -> tuple[Path, str, Path]:
    (tmp_path / "wf.yml").write_text(WORKFLOW)
    result = bcce(
        "workflow", "run", str(tmp_path / "wf.yml"), "--json", env=base_env(), cwd=tmp_path
    )
    assert result.code == 3, result.err
    first = json.loads(result.out.splitlines()[0])
    return tmp_path, first["run_id"], Path(first["run_dir"]) / "audit.jsonl"


def verify(cwd: Path, run_id: str) -> tuple[int, str]:
    result = bcce("audit", "verify", run_id, env=base_env(), cwd=cwd)
    return result.code, result.out + result.err


def test_the_log_records_who_submitted_what_and_every_decision(
    audited: tuple[Path, str, Path],
) -> None:
    cwd, run_id, log = audited
    records = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "run.submitted" and kinds[-1] == "run.finished"
    assert "@" in records[0]["data"]["by"] and len(records[0]["data"]["workflow_sha256"]) == 64
    finished = next(r for r in records if r["kind"] == "step.finished")
    assert finished["data"]["argv"] == ["echo", "hello"]
    denial = next(r for r in records if r["kind"] == "step.denied")
    assert denial["data"]["step"] == "denied" and denial["data"]["rule"] == "cmd_allowlist"
    code, out = verify(cwd, run_id)
    assert code == 0 and "audit log intact: " in out, out


@pytest.mark.parametrize("how", ["edit", "delete", "reorder", "insert", "truncate"])
def test_any_alteration_is_reported_with_the_first_bad_record(
    audited: tuple[Path, str, Path], how: str
) -> None:
    cwd, run_id, log = audited
    lines = log.read_text().splitlines()
    if how == "edit":
        lines[1] = lines[1].replace('"allow"', '"deny"')
    elif how == "delete":
        del lines[2]
    elif how == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif how == "insert":
        lines.insert(2, lines[1])
    else:
        lines = lines[:-2]
    log.write_text("".join(f"{line}\n" for line in lines))
    code, out = verify(cwd, run_id)
    assert code == 1, out
    assert "audit log NOT intact at record" in out
