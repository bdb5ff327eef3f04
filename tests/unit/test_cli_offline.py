"""Tests for the bcce CLI without a broker: validate, dry runs, usage errors and lazy imports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bcce.cli import cli

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello.yml"
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens: a command that connects fails
RUN_ID = r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-[0-9a-f]{6}"

BAD = """\
version: 1
workflow: bad
steps:
  - id: Build
    type: cmd
    command: make
  - id: test
    type: comand
  - id: lint
    type: cmd
    on_error: ignore
    command: ruff check
"""


@pytest.fixture(autouse=True)
def no_bcce_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Embedded mode, whatever the developer's shell exports; runs in an empty directory."""
    for name in list(os.environ):
        if name.startswith("BCCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def bcce(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="bcce")


def bcce_process(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCCE_")}
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "bcce", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


# validate


def test_validate_accepts_the_hello_example() -> None:
    result = bcce("workflow", "validate", str(HELLO))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{HELLO}: ok ('Hello, bcce', 4 steps)\n"


def test_validate_reports_every_problem_of_a_bad_file_and_exits_2(tmp_path: Path) -> None:
    Path("bad.yml").write_text(BAD)
    result = bcce("workflow", "validate", "bad.yml")
    assert result.exit_code == 2
    assert result.stderr == (
        "bcce: bad.yml:4:9 steps[0].id: step id 'Build' must be lowercase letters, digits and _, "
        "starting with a letter\n"
        "bcce: bad.yml:8:11 steps[1].type: unknown step type 'comand' (did you mean 'cmd'?); "
        "known types: agent, apply_diff, cmd, prompt\n"
        "bcce: bad.yml:11:15 steps[2].on_error: Input should be 'fail', 'continue' or 'retry'\n"
    )
    assert "Traceback" not in result.output


def test_validate_checks_every_file_and_still_exits_2_if_one_is_bad() -> None:
    Path("bad.yml").write_text(BAD)
    result = bcce("workflow", "validate", "bad.yml", str(HELLO))
    assert result.exit_code == 2
    assert result.stdout == f"{HELLO}: ok ('Hello, bcce', 4 steps)\n"
    assert len(result.stderr.splitlines()) == 3
    assert all(re.match(r"bcce: bad\.yml:\d+:\d+ ", line) for line in result.stderr.splitlines())


def test_validate_uses_var_for_substitution() -> None:
    Path("wf.yml").write_text(
        "version: 1\nworkflow: w\nmodel: ${MODEL}\nsteps:\n  - {id: a, type: apply_diff}\n"
    )
    assert bcce("workflow", "validate", "wf.yml").exit_code == 2
    assert bcce("workflow", "validate", "--var", "MODEL=claude", "wf.yml").exit_code == 0


def test_a_var_without_an_equals_sign_is_a_usage_error() -> None:
    result = bcce("workflow", "validate", "--var", "BAD", str(HELLO))
    assert result.exit_code == 2
    assert result.stderr == "bcce: --var 'BAD': expected KEY=VALUE with KEY a variable name\n"


# run --dry-run


def test_a_dry_run_prints_the_plan_as_json_without_a_broker() -> None:
    result = bcce("workflow", "run", "--dry-run", "--json", str(HELLO))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    run_id = plan["run_id"]
    assert re.fullmatch(RUN_ID, run_id)
    assert plan["queues"] == ["policy", "command"]
    steps = ["greet", "flaky_check", "shout", "count_words"]
    assert plan["chain"] == [
        message
        for step in steps
        for message in (
            {"task": "bcce.policy.check", "args": [run_id, step], "queue": "policy"},
            {"task": "bcce.step.cmd", "args": [run_id, step], "queue": "command"},
        )
    ]
    assert [(s["id"], s["policy"]["cmd_allowlist"]) for s in plan["steps"]] == [
        ("greet", ["echo"]),
        ("flaky_check", ["ls"]),
        ("shout", ["python3"]),
        ("count_words", ["wc"]),
    ]
    assert not Path(".bcce_runs").exists()


def test_a_dry_run_with_an_unreachable_broker_never_connects() -> None:
    result = bcce("workflow", "run", "--dry-run", "--json", "--broker", UNREACHABLE, str(HELLO))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["queues"] == ["policy", "command"]


def test_a_dry_run_of_a_bad_file_exits_2_with_its_problems() -> None:
    Path("bad.yml").write_text(BAD)
    result = bcce("workflow", "run", "--dry-run", "--json", "bad.yml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 3


def test_a_dry_run_rejects_a_bad_var() -> None:
    result = bcce("workflow", "run", "--dry-run", "--var", "1X=y", str(HELLO))
    assert result.exit_code == 2
    assert result.stderr == "bcce: --var '1X=y': expected KEY=VALUE with KEY a variable name\n"


# worker and status usage errors


def test_a_misspelt_worker_pool_exits_2_with_a_suggestion() -> None:
    proc = bcce_process("worker", "--pool", "comand", "--broker", UNREACHABLE)
    assert proc.returncode == 2
    assert proc.stderr == (
        "bcce: unknown pool 'comand' (did you mean 'command'?); "
        "pools: policy, agent, command, diff\n"
    )


def test_a_worker_without_a_broker_exits_2_saying_how_to_set_one() -> None:
    proc = bcce_process("worker", "--pool", "command")
    assert proc.returncode == 2
    assert proc.stderr == (
        "bcce: bcce worker needs a broker: set BCCE_BROKER_URL or pass --broker "
        "redis://HOST:6379/0 (embedded runs start their own workers)\n"
    )


def test_the_status_of_an_unknown_embedded_run_is_one_line_and_exit_2() -> None:
    result = bcce("workflow", "status", "NOPE")
    assert result.exit_code == 2
    assert result.stderr == (
        "bcce: no run 'NOPE' in .bcce_runs/ (embedded runs are kept only on disk; "
        "pass --broker for a distributed run)\n"
    )
    assert result.stdout == ""


# Lazy imports

HEAVY = ("celery.worker", "boto3", "botocore", "flower", "workers.executors")
IMPORTS_AFTER = """\
import json, sys
from bcce.cli import cli
try:
    cli({args!r}, prog_name="bcce")
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "heavy": sorted(
    m for m in sys.modules if m.startswith({heavy!r}))}}))
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["workflow", "validate", str(HELLO)]],
    ids=["help", "validate"],
)
def test_help_and_validate_import_no_worker_executor_or_aws_code(args: list[str]) -> None:
    proc = bcce_process(code=IMPORTS_AFTER.format(args=args, heavy=HEAVY))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report == {"code": 0, "heavy": []}


def test_python_dash_m_bcce_is_the_bcce_command() -> None:
    proc = bcce_process("--help")
    assert proc.returncode == 0
    assert "workflow" in proc.stdout and "worker" in proc.stdout
