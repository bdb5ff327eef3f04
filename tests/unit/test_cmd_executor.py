"""Tests for workers.executors.cmd: cmd steps run as argv, their templates, and their artifacts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bcce.steptypes import StepContext, StepOutcome
from bcce.workflow import CmdStep
from workers.executors.cmd import MAX_TEMPLATE_BYTES, execute

PATH_ONLY = {"PATH": os.environ.get("PATH", os.defpath)}
INJECTION = "; touch pwned"


class Run:
    """One step attempt in a temporary workspace, with earlier steps' outputs on disk."""

    def __init__(self, tmp_path: Path) -> None:
        self.workspace = tmp_path / "ws"
        self.run_dir = tmp_path / "run"
        self.workspace.mkdir()
        self.outputs: dict[str, str] = {}

    def output_path(self, step_id: str) -> Path:
        return self.run_dir / step_id / "output.txt"

    def earlier(self, step_id: str, output: str) -> None:
        path = self.output_path(step_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(output, encoding="utf-8")

    def execute(
        self, timeout: float = 10.0, env: dict[str, str] | None = None, **step: Any
    ) -> StepOutcome:
        self.step_dir = self.run_dir / "b"
        self.step_dir.mkdir(parents=True, exist_ok=True)
        ctx = StepContext(
            run_id="2026-11-26T14-03-07-a1b2c3",
            step=CmdStep(id="b", type="cmd", **step),
            attempt=1,
            timeout_seconds=timeout,
            workspace=self.workspace,
            step_dir=self.step_dir,
            env=PATH_ONLY if env is None else env,
            output_cap_bytes=1024 * 1024,
            read_output=lambda sid: self.output_path(sid).read_text("utf-8"),
            output_path=self.output_path,
        )
        return execute(ctx)

    def artifact(self, name: str) -> str:
        return (self.step_dir / name).read_text("utf-8")

    @property
    def injected(self) -> bool:
        return (self.workspace / "pwned").exists()


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def test_a_command_that_succeeds_keeps_its_stdout_as_output_txt(run: Run) -> None:
    outcome = run.execute(command="printf 'hello\\nworld\\n'")
    assert (outcome.ok, outcome.exit_code, outcome.error, outcome.timed_out) == (
        True,
        0,
        None,
        False,
    )
    assert run.artifact("stdout.txt") == "hello\nworld\n"
    assert run.artifact("output.txt") == "hello\nworld\n"
    assert run.artifact("stderr.txt") == ""
    assert outcome.metrics["stdout_bytes"] == 12


def test_the_command_runs_in_the_workspace_with_exactly_the_given_environment(run: Run) -> None:
    outcome = run.execute(
        command=["sh", "-c", 'pwd; echo "$GREETING"; echo "${HOME:-no home}"'],
        env={**PATH_ONLY, "GREETING": "hi"},
    )
    assert outcome.ok
    assert run.artifact("output.txt") == f"{run.workspace}\nhi\nno home\n"


def test_a_template_fills_one_argument_without_a_shell(run: Run) -> None:
    run.earlier("a", f"x{INJECTION}\n")
    outcome = run.execute(command="printf '[%s]' \"{{ steps.a.output }}\"")
    assert outcome.ok
    assert run.artifact("output.txt") == f"[x{INJECTION}]"
    assert not run.injected


def test_a_template_in_a_command_list_fills_one_argument(run: Run) -> None:
    run.earlier("a", "two words\n")
    outcome = run.execute(command=["printf", "[%s]", "{{steps.a.output}}"])
    assert outcome.ok
    assert run.artifact("output.txt") == "[two words]"


def test_an_output_file_template_gives_the_earlier_steps_output_path(run: Run) -> None:
    run.earlier("a", "one two three\n")
    outcome = run.execute(command='cat "{{ steps.a.output_file }}"')
    assert outcome.ok
    assert run.artifact("output.txt") == "one two three\n"


def test_a_template_reaches_a_shell_as_a_variable_never_as_code(run: Run) -> None:
    run.earlier("a", f"x{INJECTION}\n")
    outcome = run.execute(command="printf '[%s]' \"{{ steps.a.output }}\" | tr x y", shell=True)
    assert outcome.ok
    assert run.artifact("output.txt") == f"[y{INJECTION}]"
    assert not run.injected


def test_an_unquoted_template_in_a_shell_is_split_into_words_but_never_run(run: Run) -> None:
    run.earlier("a", f"x{INJECTION}\n")
    outcome = run.execute(command="printf '[%s]' {{ steps.a.output }}", shell=True)
    assert outcome.ok
    assert not run.injected
    assert run.artifact("output.txt").startswith("[x")


def test_an_output_too_large_for_an_argument_fails_with_advice(run: Run) -> None:
    run.earlier("a", "x" * (MAX_TEMPLATE_BYTES + 1))
    outcome = run.execute(command=["echo", "{{ steps.a.output }}"])
    error = (
        f"cannot fill the command's templates: output of 'a' is over {MAX_TEMPLATE_BYTES} "
        "bytes: use {{ steps.a.output_file }} instead"
    )
    assert (outcome.ok, outcome.error) == (False, error)
    assert run.artifact("stderr.txt") == f"bcce: {error}\n"


def test_a_missing_executable_fails_with_a_clear_error_in_stderr_txt(run: Run) -> None:
    outcome = run.execute(command="no-such-tool-xyz --help")
    error = "command not found: 'no-such-tool-xyz' (not on PATH)"
    assert (outcome.ok, outcome.exit_code, outcome.error) == (False, None, error)
    assert run.artifact("stderr.txt") == f"bcce: {error}\n"
    assert run.artifact("stdout.txt") == run.artifact("output.txt") == ""


def test_a_non_zero_exit_fails_with_its_code_and_keeps_both_streams(run: Run) -> None:
    outcome = run.execute(command=["sh", "-c", "echo partial; echo oops >&2; exit 3"])
    assert (outcome.ok, outcome.exit_code, outcome.error) == (False, 3, "exited with code 3")
    assert run.artifact("output.txt") == "partial\n"
    assert run.artifact("stderr.txt") == "oops\n"
    assert outcome.metrics["exit_code"] == 3


def test_a_command_over_its_timeout_is_stopped_and_reported_as_timed_out(run: Run) -> None:
    outcome = run.execute(command="sleep 30", timeout=0.3)
    assert (outcome.ok, outcome.timed_out, outcome.exit_code) == (False, True, None)
    assert outcome.error == "timed out after 0.3s; its process group was killed"
    assert outcome.metrics["command_seconds"] < 10


def test_an_unquoted_template_in_a_command_string_is_never_passed_on_literally(run: Run) -> None:
    run.earlier("a", "hello\n")
    try:
        outcome = run.execute(command="printf '[%s]' {{ steps.a.output }}")
    except ValidationError:
        return  # refusing it when the workflow is validated is a fix too
    assert outcome.ok
    assert run.artifact("output.txt") == "[hello]"


def test_a_template_in_a_command_list_run_by_a_shell_cannot_inject_commands(run: Run) -> None:
    run.earlier("a", f"x{INJECTION}\n")
    try:
        outcome = run.execute(command=["printf", "[%s]", "{{ steps.a.output }}"], shell=True)
    except ValidationError:
        return  # refusing shell with a command list is a fix too
    assert not run.injected
    assert outcome.ok
    assert run.artifact("output.txt") == f"[x{INJECTION}]"


def test_a_double_quoted_template_run_by_a_shell_cannot_inject_commands(run: Run) -> None:
    run.earlier("a", "$(touch pwned)\n")
    try:
        outcome = run.execute(command="printf '[%s]' \"{{ steps.a.output }}\"", shell=True)
    except ValidationError:
        return  # refusing quoted templates in shell commands is a fix too
    assert not run.injected
    assert outcome.ok
    assert run.artifact("output.txt") == "[$(touch pwned)]"


def test_a_retry_that_cannot_start_leaves_no_output_of_the_earlier_attempt(run: Run) -> None:
    assert run.execute(command=["sh", "-c", "echo first attempt; exit 1"]).exit_code == 1
    outcome = run.execute(command="no-such-tool-xyz")
    assert not outcome.ok
    assert run.artifact("stdout.txt") == run.artifact("output.txt") == ""
