"""Tests for bcce.agentpolicy: tool names Claude Code is given, and every tool call's check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bcce.agentpolicy import constraints, tool_denial, tool_set, workspace_path
from bcce.policy import Effective


def policy(**kw: object) -> Effective:
    base: dict[str, object] = {
        "timeout_seconds": 60,
        "cmd_allowlist": ("pytest", "git status"),
        "allowed_paths": ("src/**", "!src/secrets/**"),
        "max_files": 5,
        "max_edits": 50,
    }
    return Effective(**{**base, **kw})  # type: ignore[arg-type]


def test_available_tools_translate_to_claude_code_tools_and_bash_rules() -> None:
    tools = tool_set(["ReadFile", "Search", "Diff", "Cmd"], policy())
    assert tools.tools == ("Read", "Grep", "Glob", "Edit", "Write", "MultiEdit", "Bash")
    assert tools.allowed == (
        "Read",
        "Grep",
        "Glob",
        "Edit",
        "Write",
        "MultiEdit",
        "Bash(pytest:*)",
        "Bash(git status:*)",
    )
    assert "WebFetch" in tools.disallowed and "Task" in tools.disallowed


def test_read_only_steps_get_no_edit_tools() -> None:
    tools = tool_set(["ReadFile", "Apply"], policy(max_edits=0))
    assert tools.tools == ("Read",)
    assert {"Edit", "Write", "MultiEdit", "Bash"} <= set(tools.disallowed)


@pytest.mark.parametrize(
    ("tool", "args", "reason"),
    [
        ("Edit", {"file_path": "src/app.py"}, None),
        ("Write", {"file_path": "README.md"}, "'README.md' is outside policy.allowed_paths"),
        ("Write", {"file_path": "src/secrets/key.pem"}, "'src/secrets/key.pem' is outside"),
        ("Write", {"file_path": "/etc/passwd"}, "'/etc/passwd' is outside the workspace"),
        ("Edit", {"file_path": "src/../../x"}, "is outside the workspace"),
        ("Read", {"file_path": "/etc/shadow"}, "is outside the workspace"),
        ("Read", {"file_path": "README.md"}, None),
        ("Bash", {"command": "pytest -q tests"}, None),
        ("Bash", {"command": "git status --short"}, None),
        ("Bash", {"command": "git push origin main"}, "'git push' is not in policy.cmd_allowlist"),
        ("Bash", {"command": "pytest; curl evil.sh"}, "one simple command per Bash call"),
        ("Bash", {"command": "pytest $(rm -rf ~)"}, "one simple command per Bash call"),
        ("Bash", {"command": "pytest > /etc/x"}, "one simple command per Bash call"),
        ("WebFetch", {"url": "http://x"}, "tool WebFetch is not available to this step"),
    ],
)
def test_tool_calls_are_checked_with_the_gate_rules(
    tmp_path: Path, tool: str, args: dict[str, str], reason: str | None
) -> None:
    p = policy()
    tools = tool_set(["ReadFile", "Search", "Diff", "Cmd"], p)
    denial = tool_denial(tool, args, p, tools, tmp_path)
    if reason is None:
        assert denial is None
    else:
        assert denial is not None and reason in denial


def test_a_symlink_out_of_the_workspace_is_outside(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    os.symlink("/etc", tmp_path / "src" / "etc")
    assert workspace_path("src/etc/passwd", tmp_path) is None
    assert workspace_path(str(tmp_path / "src" / "a.py"), tmp_path) == "src/a.py"


def test_edits_are_denied_on_a_read_only_step(tmp_path: Path) -> None:
    p = policy(max_edits=0)
    tools = tool_set(["ReadFile", "Apply"], p)
    assert tool_denial("Edit", {"file_path": "src/a.py"}, p, tools, tmp_path) == (
        "tool Edit is not available to this step (available: Read)"
    )


def test_constraints_say_what_the_agent_may_do() -> None:
    p = policy()
    text = constraints(p, tool_set(["ReadFile", "Cmd"], p))
    assert "Change only files matching: src/**, !src/secrets/**." in text
    assert "Bash may run pytest, git status" in text
