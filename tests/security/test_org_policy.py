"""The organisation policy holds end to end: the gate denies what it forbids, a broken
policy file denies everything, and `validate` and `policy show` say so before a run."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import base_env, bcce

ORG = textwrap.dedent(
    """\
    version: 1
    commands:
      allow: [echo, python3]
      deny: ["python3 -c"]
    approvals: {apply_diff: always}
    """
)
WORKFLOW = textwrap.dedent(
    """\
    version: 1
    workflow: org
    steps:
      - id: hello
        type: cmd
        command: echo hello
      - id: sneaky
        type: cmd
        command: python3 -c "print('owned')"
        policy:
          cmd_allowlist: [python3]     # the step allows itself; the org does not
    """
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "org.yaml").write_text(ORG)
    (tmp_path / "wf.yml").write_text(WORKFLOW)
    return tmp_path, base_env(BCCE_POLICY_FILE=str(tmp_path / "org.yaml"))


def run_json(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, object]]:
    result = bcce("workflow", "run", str(cwd / "wf.yml"), "--json", *args, env=env, cwd=cwd)
    return result.code, json.loads(result.out.splitlines()[-1])


def test_the_gate_denies_what_the_org_forbids_and_the_audit_log_says_so(
    setup: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = setup
    code, summary = run_json(cwd, env)
    assert code == 3
    steps = {s["id"]: s for s in summary["steps"]}  # type: ignore[union-attr]
    assert steps["hello"]["status"] == "succeeded"
    assert steps["sneaky"]["status"] == "denied"
    assert summary["error"] == (
        "step sneaky denied: 'python3 -c' is denied by the org policy ('python3 -c')"
    )
    assert not (Path(str(summary["run_dir"])) / "sneaky" / "stdout.txt").exists()
    shown = bcce("audit", "show", str(summary["run_id"]), "--json", env=env, cwd=cwd)
    denial = [json.loads(x) for x in shown.out.splitlines() if '"step.denied"' in x]
    assert denial and denial[0]["data"]["rule"] == "org_commands"


def test_a_broken_policy_file_denies_every_step(setup: tuple[Path, dict[str, str]]) -> None:
    cwd, env = setup
    (cwd / "org.yaml").write_text("version: 1\ncommands: {alow: [echo]}\n")
    code, summary = run_json(cwd, env)
    assert code == 3
    assert [s["status"] for s in summary["steps"]] == ["denied", "pending"]  # type: ignore[union-attr]
    assert "the org policy" in str(summary["error"]) and "commands.alow" in str(summary["error"])


def test_validate_and_policy_show_report_it_before_anything_runs(
    setup: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = setup
    checked = bcce("workflow", "validate", str(cwd / "wf.yml"), env=env, cwd=cwd)
    assert checked.code == 2
    assert "step 'sneaky': 'python3 -c' is denied by the org policy" in checked.err
    shown = bcce("policy", "show", str(cwd / "wf.yml"), "--json", env=env, cwd=cwd)
    assert shown.code == 3
    rows = {r["step"]: r for r in map(json.loads, shown.out.splitlines())}
    assert rows["hello"]["denied"] is None
    assert rows["sneaky"]["denied"]["rule"] == "org_commands"
    assert rows["hello"]["policy"]["cmd_denylist"] == ["python3 -c"]
    assert not (cwd / ".bcce_runs").exists()


def test_the_org_can_insist_a_person_approves_every_diff(
    setup: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = setup
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True
        )
    (cwd / "wf.yml").write_text(
        textwrap.dedent(
            """\
            version: 1
            workflow: org
            steps:
              - id: write
                type: cmd
                command: python3 make.py
              - id: ship
                type: apply_diff
                approve: true            # the org says otherwise
            """
        )
    )
    (cwd / "make.py").write_text("open('new.txt', 'w').write('x')\n")
    (cwd / ".gitignore").write_text("/.bcce_runs/\n")
    code, summary = run_json(cwd, env, "--approve-all")
    assert code == 4, summary
    assert summary["status"] == "awaiting_approval"
    assert not (cwd / "new.txt").exists()


def test_the_org_can_forbid_approving_ones_own_run(setup: tuple[Path, dict[str, str]]) -> None:
    cwd, env = setup
    (cwd / "org.yaml").write_text(
        "version: 1\napprovals: {apply_diff: always, self_approval: false}\n"
    )
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True
        )
    (cwd / "wf.yml").write_text(
        "version: 1\nworkflow: org\nsteps:\n"
        "  - {id: write, type: cmd, command: python3 make.py}\n"
        "  - {id: ship, type: apply_diff}\n"
    )
    (cwd / "make.py").write_text("open('new.txt', 'w').write('x')\n")
    (cwd / ".gitignore").write_text("/.bcce_runs/\n")
    code, summary = run_json(cwd, env)
    assert code == 4
    mine = bcce("workflow", "approve", str(summary["run_id"]), "ship", env=env, cwd=cwd)
    assert mine.code == 3
    assert "forbids approving one's own" in mine.err
    assert not (cwd / "new.txt").exists()
