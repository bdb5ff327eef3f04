"""The fake ``claude`` (tests/fakes/claude) driven through the real Claude Agent SDK.

Every SDK test spawns the fake with ``cli_path`` and goes through the SDK's real
transport, control protocol and message parser, so what passes here is what
bcce's agent step will see from the fake.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

sdk = pytest.importorskip("claude_agent_sdk")

import anyio  # noqa: E402
from claude_agent_sdk import (  # noqa: E402
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    HookMatcher,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultError,
    ResultMessage,
    SystemMessage,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
    query,
)

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "claude"

pytestmark = pytest.mark.timeout(30)


class Run:
    """What one SDK query against the fake produced."""

    def __init__(self, messages: list[Any], error: BaseException | None, log: Path) -> None:
        self.messages = messages
        self.error = error
        self.log_path = log

    @property
    def result(self) -> ResultMessage:
        results = [m for m in self.messages if isinstance(m, ResultMessage)]
        assert results, f"no ResultMessage in {self.messages!r}"
        return results[-1]

    def tool_results(self) -> list[ToolResultBlock]:
        return [
            block
            for m in self.messages
            if isinstance(m, UserMessage) and isinstance(m.content, list)
            for block in m.content
            if isinstance(block, ToolResultBlock)
        ]

    def tool_uses(self) -> list[ToolUseBlock]:
        return [
            block
            for m in self.messages
            if isinstance(m, AssistantMessage)
            for block in m.content
            if isinstance(block, ToolUseBlock)
        ]

    @property
    def log(self) -> dict[str, Any]:
        """The final log entry of the (last) invocation."""
        entries = read_log(self.log_path)
        final = [e for e in entries if not e["partial"]]
        assert final, f"no final log entry in {entries!r}"
        return final[-1]


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def run_fake(
    tmp_path: Path,
    workspace: Path,
    scenario: dict[str, Any] | None,
    prompt: str = "do the task",
    env: dict[str, str] | None = None,
    **options: Any,
) -> Run:
    log = tmp_path / "calls.jsonl"
    full_env = {"FAKE_CLAUDE_LOG": str(log), **(env or {})}
    if scenario is not None:
        path = tmp_path / f"scenario-{len(list(tmp_path.glob('scenario-*')))}.json"
        path.write_text(json.dumps(scenario))
        full_env["FAKE_CLAUDE_SCENARIO"] = str(path)
    opts = ClaudeAgentOptions(cli_path=str(FAKE), cwd=str(workspace), env=full_env, **options)
    messages: list[Any] = []
    error: list[BaseException] = []

    async def go() -> None:
        try:
            with anyio.fail_after(20):
                async for message in query(prompt=prompt, options=opts):
                    messages.append(message)
        except ResultError as exc:
            error.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sdk.CanUseToolShadowedWarning)
        anyio.run(go)
    return Run(messages, error[0] if error else None, log)


class Recorder:
    """A can_use_tool callback and PreToolUse hook that record their calls."""

    def __init__(
        self,
        deny_tools: dict[str, str] | None = None,
        hook_deny: dict[str, str] | None = None,
    ) -> None:
        self.deny_tools = deny_tools or {}
        self.hook_deny = hook_deny or {}
        self.permission_calls: list[tuple[str, dict[str, Any], str | None]] = []
        self.hook_calls: list[dict[str, Any]] = []

    async def can_use_tool(self, name: str, tool_input: dict[str, Any], ctx: Any) -> Any:
        self.permission_calls.append((name, tool_input, ctx.tool_use_id))
        if name in self.deny_tools:
            return PermissionResultDeny(message=self.deny_tools[name])
        return PermissionResultAllow()

    async def hook(self, hook_input: Any, tool_use_id: str | None, ctx: Any) -> Any:
        self.hook_calls.append(dict(hook_input))
        reason = self.hook_deny.get(hook_input["tool_name"])
        if reason is not None:
            return {
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "deny",
                    "permissionDecisionReason": reason,
                }
            }
        return {}

    def options(self) -> dict[str, Any]:
        return {
            "can_use_tool": self.can_use_tool,
            "hooks": {"PreToolUse": [HookMatcher(matcher=None, hooks=[self.hook])]},
        }


# -- plain CLI behaviour ---------------------------------------------------------


def test_version_flag() -> None:
    for flag in ("--version", "-v"):
        out = subprocess.run([str(FAKE), flag], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "2.1.300 (Claude Code)"


def test_print_mode_cli_without_sdk(tmp_path: Path, workspace: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"result": "plain answer"}))
    env = {**os.environ, "FAKE_CLAUDE_SCENARIO": str(scenario)}
    out = subprocess.run(
        [str(FAKE), "-p", "hello", "--output-format", "json"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    frame = json.loads(out.stdout)
    assert frame["type"] == "result" and frame["result"] == "plain answer"


# -- through the SDK ---------------------------------------------------------------


def test_no_scenario_answers_ok(tmp_path: Path, workspace: Path) -> None:
    run = run_fake(tmp_path, workspace, None)
    assert run.error is None
    assert run.result.result == "ok" and run.result.subtype == "success"
    init = [m for m in run.messages if isinstance(m, SystemMessage) and m.subtype == "init"]
    assert init and init[0].data["cwd"] == str(workspace)
    assert init[0].data["claude_code_version"] == "2.1.300"


def test_options_reach_argv_env_and_log(tmp_path: Path, workspace: Path) -> None:
    run = run_fake(
        tmp_path,
        workspace,
        {"result": "fine"},
        prompt="the prompt",
        env={"BCCE_MARKER": "marker-value"},
        model="claude-opus-4-1",
        allowed_tools=["Read", "Bash(git:*)"],
        disallowed_tools=["WebFetch"],
        max_turns=7,
        permission_mode="acceptEdits",
        resume="11111111-2222-3333-4444-555555555555",
        system_prompt="be terse",
    )
    assert run.error is None
    entry = run.log
    argv = entry["argv"]

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    assert flag("--model") == "claude-opus-4-1"
    assert flag("--allowedTools") == "Read,Bash(git:*)"
    assert flag("--disallowedTools") == "WebFetch"
    assert flag("--max-turns") == "7"
    assert flag("--permission-mode") == "acceptEdits"
    assert flag("--system-prompt") == "be terse"
    assert "--resume=11111111-2222-3333-4444-555555555555" in argv
    assert entry["env"]["BCCE_MARKER"] == "marker-value"
    assert entry["env"]["CLAUDE_CODE_ENTRYPOINT"] == "sdk-py"
    assert entry["cwd"] == str(workspace)
    assert entry["prompt"] == "the prompt"
    assert entry["initialize"]["subtype"] == "initialize"
    assert entry["exit_code"] == 0
    # A resumed run keeps the session id it resumed.
    assert run.result.session_id == "11111111-2222-3333-4444-555555555555"
    assert entry["allowed_tools"] == ["Read", "Bash(git:*)"]
    # A partial entry was flushed as soon as the prompt arrived.
    assert [e["partial"] for e in read_log(run.log_path)] == [True, False]


def test_write_allowed_by_can_use_tool(tmp_path: Path, workspace: Path) -> None:
    rec = Recorder()
    scenario = {
        "session_id": "fixed-session",
        "actions": [
            {"tool": "Write", "input": {"file_path": "src/pkg/a.py", "content": "x = 1\n"}},
            {"text": "wrote it"},
        ],
        "result": "done",
        "usage": {"input_tokens": 1200, "output_tokens": 300},
        "total_cost_usd": 0.0081,
    }
    run = run_fake(tmp_path, workspace, scenario, model="claude-sonnet-4-5", **rec.options())
    assert run.error is None
    assert (workspace / "src/pkg/a.py").read_text() == "x = 1\n"
    assert [c[0] for c in rec.permission_calls] == ["Write"]
    assert rec.permission_calls[0][2] == run.tool_uses()[0].id
    hook = rec.hook_calls[0]
    assert hook["hook_event_name"] == "PreToolUse" and hook["tool_name"] == "Write"
    assert hook["cwd"] == str(workspace) and hook["session_id"] == "fixed-session"
    assert run.tool_results()[0].is_error is False

    result = run.result
    assert result.session_id == "fixed-session"
    assert result.result == "done" and result.num_turns == 2
    assert result.total_cost_usd == pytest.approx(0.0081)
    assert result.usage is not None and result.usage["input_tokens"] == 1200
    assert result.model_usage is not None and "claude-sonnet-4-5" in result.model_usage
    assert result.permission_denials == []
    # Per-message usage adds up to the result's totals.
    assistant = [m for m in run.messages if isinstance(m, AssistantMessage)]
    assert sum(m.usage["input_tokens"] for m in assistant if m.usage) == 1200
    assert sum(m.usage["output_tokens"] for m in assistant if m.usage) == 300
    assert [d["via"] for d in run.log["decisions"]] == ["hook", "can_use_tool"]


def test_hook_denies_edit(tmp_path: Path, workspace: Path) -> None:
    (workspace / "a.py").write_text("x = 1\n")
    rec = Recorder(hook_deny={"Edit": "a.py is outside allowed_paths"})
    scenario = {
        "actions": [
            {
                "tool": "Edit",
                "input": {"file_path": "a.py", "old_string": "x = 1", "new_string": "x = 2"},
            }
        ],
        "result": "tried",
    }
    run = run_fake(tmp_path, workspace, scenario, **rec.options())
    assert run.error is None
    assert (workspace / "a.py").read_text() == "x = 1\n"
    assert rec.permission_calls == []  # a hook denial never reaches can_use_tool
    [block] = run.tool_results()
    assert block.is_error is True and block.content == "a.py is outside allowed_paths"
    [denial] = run.result.permission_denials or []
    assert denial["tool_name"] == "Edit"
    assert denial["tool_use_id"] == run.tool_uses()[0].id
    assert denial["tool_input"]["new_string"] == "x = 2"
    assert run.log["decisions"] == [
        {"tool": "Edit", "via": "hook", "allowed": False, "reason": "a.py is outside allowed_paths"}
    ]


def test_hook_matcher_selects_tools(tmp_path: Path, workspace: Path) -> None:
    calls: list[str] = []

    async def edit_hook(hook_input: Any, tool_use_id: str | None, ctx: Any) -> Any:
        calls.append(hook_input["tool_name"])
        return {"decision": "block", "reason": "blocked via decision"}

    scenario = {
        "actions": [
            {"tool": "Write", "input": {"file_path": "w.txt", "content": "w"}},
            {"tool": "Read", "input": {"file_path": "w.txt"}},
        ]
    }
    run = run_fake(
        tmp_path,
        workspace,
        scenario,
        permission_mode="bypassPermissions",
        hooks={"PreToolUse": [HookMatcher(matcher="Write|Edit", hooks=[edit_hook])]},
    )
    assert calls == ["Write"]
    assert not (workspace / "w.txt").exists()
    blocks = run.tool_results()
    assert blocks[0].content == "blocked via decision" and blocks[0].is_error
    assert blocks[1].is_error  # Read of the file that was never written
    assert "does not exist" in str(blocks[1].content)


def test_hook_allow_skips_can_use_tool_and_post_hooks_run(tmp_path: Path, workspace: Path) -> None:
    rec = Recorder(deny_tools={"Write": "would deny"})
    post: list[dict[str, Any]] = []

    async def allow(hook_input: Any, tool_use_id: str | None, ctx: Any) -> Any:
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "allow",
                "updatedInput": {**hook_input["tool_input"], "content": "rewritten"},
            }
        }

    async def after(hook_input: Any, tool_use_id: str | None, ctx: Any) -> Any:
        post.append(dict(hook_input))
        return {"continue_": False, "stopReason": "budget spent"}

    scenario = {
        "actions": [
            {"tool": "Write", "input": {"file_path": "w.txt", "content": "original"}},
            {"tool": "Bash", "input": {"command": "echo never"}},
        ],
        "result": "unused",
    }
    run = run_fake(
        tmp_path,
        workspace,
        scenario,
        can_use_tool=rec.can_use_tool,
        hooks={
            "PreToolUse": [HookMatcher(matcher="Write", hooks=[allow])],
            "PostToolUse": [HookMatcher(matcher=None, hooks=[after])],
        },
    )
    # A hook "allow" answers the permission question itself, as in the real CLI.
    assert rec.permission_calls == []
    assert (workspace / "w.txt").read_text() == "rewritten"
    assert post[0]["hook_event_name"] == "PostToolUse"
    assert post[0]["tool_response"]["content"] == "rewritten"
    # `continue: false` from a hook ends the run after that tool.
    assert [u.name for u in run.tool_uses()] == ["Write"]
    assert run.error is None and run.result.subtype == "success"
    assert run.result.result == ""


def test_can_use_tool_denies_bash(tmp_path: Path, workspace: Path) -> None:
    rec = Recorder(deny_tools={"Bash": "shell is not allowed in this step"})
    scenario = {"actions": [{"tool": "Bash", "input": {"command": "touch ran"}}]}
    run = run_fake(tmp_path, workspace, scenario, **rec.options())
    assert run.error is None
    assert not (workspace / "ran").exists()
    assert rec.permission_calls == [("Bash", {"command": "touch ran"}, run.tool_uses()[0].id)]
    [block] = run.tool_results()
    assert block.is_error and block.content == "shell is not allowed in this step"
    assert [d["tool_name"] for d in run.result.permission_denials or []] == ["Bash"]


def test_allowed_tools_bypass_can_use_tool(tmp_path: Path, workspace: Path) -> None:
    rec = Recorder(deny_tools={"Bash": "asked", "Write": "asked"})
    scenario = {
        "actions": [
            {"tool": "Write", "input": {"file_path": "w.txt", "content": "w"}},
            {"tool": "Bash", "input": {"command": "echo hi"}},
            {"tool": "Bash", "input": {"command": "echo hi && touch sneaky"}},
            {"tool": "Read", "input": {"file_path": "w.txt"}},
        ]
    }
    run = run_fake(
        tmp_path,
        workspace,
        scenario,
        allowed_tools=["Write", "Bash(echo:*)"],
        **rec.options(),
    )
    assert (workspace / "w.txt").read_text() == "w"
    # Write and `echo hi` are pre-approved; Read inside the cwd needs no permission;
    # only the compound command falls through to can_use_tool.
    assert [(c[0], c[1]) for c in rec.permission_calls] == [
        ("Bash", {"command": "echo hi && touch sneaky"})
    ]
    assert not (workspace / "sneaky").exists()
    blocks = run.tool_results()
    assert blocks[1].content == "hi" and not blocks[1].is_error
    assert blocks[3].content == "w"
    # Hooks still see every tool use.
    assert [h["tool_name"] for h in rec.hook_calls] == ["Write", "Bash", "Bash", "Read"]


def test_disallowed_and_unavailable_tools_denied_without_asking(
    tmp_path: Path, workspace: Path
) -> None:
    rec = Recorder()
    scenario = {
        "actions": [
            {"tool": "Bash", "input": {"command": "touch ran"}},
            {"tool": "WebFetch", "input": {"url": "https://example.com"}},
            {"tool": "Write", "input": {"file_path": "w.txt", "content": "w"}},
        ]
    }
    run = run_fake(
        tmp_path,
        workspace,
        scenario,
        tools=["Bash", "Write", "Read"],
        disallowed_tools=["Bash"],
        **rec.options(),
    )
    assert not (workspace / "ran").exists()
    assert (workspace / "w.txt").exists()
    assert [h["tool_name"] for h in rec.hook_calls] == ["Write"]
    assert [c[0] for c in rec.permission_calls] == ["Write"]
    blocks = run.tool_results()
    assert blocks[0].content == "Permission to use Bash has been denied."
    assert "No such tool available: WebFetch" in str(blocks[1].content)
    denied = [d["tool_name"] for d in run.result.permission_denials or []]
    assert denied == ["Bash", "WebFetch"]


def test_print_mode_edits_without_requests(tmp_path: Path, workspace: Path) -> None:
    (workspace / "a.py").write_text("x = 1\n")
    rec = Recorder(deny_tools={"Edit": "no"}, hook_deny={"Edit": "no"})
    scenario = {
        "print_mode": True,
        "actions": [
            {
                "tool": "Edit",
                "input": {"file_path": "a.py", "old_string": "x = 1", "new_string": "x = 2"},
            },
            {"tool": "Bash", "input": {"command": "echo side effect > out.txt"}},
        ],
    }
    run = run_fake(tmp_path, workspace, scenario, **rec.options())
    assert (workspace / "a.py").read_text() == "x = 2\n"
    assert (workspace / "out.txt").read_text() == "side effect\n"
    assert rec.hook_calls == [] and rec.permission_calls == []
    assert run.result.permission_denials == []
    assert {d["reason"] for d in run.log["decisions"]} == {"print_mode"}


def test_max_turns(tmp_path: Path, workspace: Path) -> None:
    scenario = {
        "actions": [
            {"tool": "Write", "input": {"file_path": f"f{i}.txt", "content": str(i)}}
            for i in range(3)
        ]
    }
    run = run_fake(tmp_path, workspace, scenario, max_turns=2, permission_mode="bypassPermissions")
    assert sorted(p.name for p in workspace.iterdir()) == ["f0.txt", "f1.txt"]
    result = run.result
    assert result.subtype == "error_max_turns" and result.is_error
    assert result.errors == ["Reached maximum number of turns (2)"]
    assert isinstance(run.error, ResultError) and run.error.subtype == "error_max_turns"
    assert run.log["exit_code"] == 1


def test_fail_unless_resumed(tmp_path: Path, workspace: Path) -> None:
    scenario = {
        "fail_unless_resumed": True,
        "actions": [{"tool": "Write", "input": {"file_path": "w.txt", "content": "w"}}],
        "result": "second time lucky",
    }
    first = run_fake(tmp_path, workspace, scenario, permission_mode="bypassPermissions")
    assert first.result.subtype == "error_during_execution" and first.result.is_error
    assert isinstance(first.error, ResultError)
    assert not (workspace / "w.txt").exists()
    session = first.result.session_id

    second = run_fake(
        tmp_path, workspace, scenario, permission_mode="bypassPermissions", resume=session
    )
    assert second.error is None
    assert second.result.subtype == "success" and second.result.result == "second time lucky"
    assert second.result.session_id == session
    assert (workspace / "w.txt").read_text() == "w"


def test_is_error_result(tmp_path: Path, workspace: Path) -> None:
    scenario = {"result": "API Error: 529 overloaded", "is_error": True, "total_cost_usd": 0.5}
    run = run_fake(tmp_path, workspace, scenario)
    result = run.result
    assert result.is_error and result.subtype == "success"
    assert result.result == "API Error: 529 overloaded"
    assert isinstance(run.error, ResultError)
    assert "API Error: 529 overloaded" in str(run.error)
    assert run.log["exit_code"] == 1


def test_stderr_print_and_tools(tmp_path: Path, workspace: Path) -> None:
    (workspace / "pkg").mkdir()
    (workspace / "pkg" / "m.py").write_text("def foo():\n    return 1\n")
    (workspace / "README.md").write_text("# readme\n")
    lines: list[str] = []
    scenario = {
        "actions": [
            {"print": "warming up"},
            {"tool": "Glob", "input": {"pattern": "**/*.py"}},
            {"tool": "Grep", "input": {"pattern": "foo", "path": "."}},
            {"tool": "Read", "input": {"file_path": "README.md"}},
            {"tool": "Bash", "input": {"command": "echo out; echo err >&2; exit 3"}},
            {"tool": "Edit", "input": {"file_path": "README.md", "old_string": "zzz"}},
            {"sleep": 0.05},
        ]
    }
    run = run_fake(
        tmp_path,
        workspace,
        scenario,
        permission_mode="bypassPermissions",
        stderr=lines.append,
    )
    assert "warming up" in lines
    glob_, grep, read, bash, edit = run.tool_results()
    assert glob_.content == str(workspace / "pkg" / "m.py")
    assert str(workspace / "pkg" / "m.py") in str(grep.content)
    assert read.content == "# readme\n"
    assert bash.is_error and bash.content == "Exit code 3\nout\nerr"
    assert edit.is_error and "String to replace not found" in str(edit.content)


def test_client_interrupt_and_later_turns(tmp_path: Path, workspace: Path) -> None:
    scenario = tmp_path / "client.json"
    scenario.write_text(
        json.dumps(
            {
                "actions": [
                    {"text": "starting"},
                    {"sleep": 10},
                    {"tool": "Write", "input": {"file_path": "late.txt", "content": "x"}},
                ],
                "turns": [{"result": "second answer"}],
            }
        )
    )
    opts = ClaudeAgentOptions(
        cli_path=str(FAKE),
        cwd=str(workspace),
        env={"FAKE_CLAUDE_SCENARIO": str(scenario)},
        permission_mode="bypassPermissions",
    )
    results: list[ResultMessage] = []

    async def go() -> None:
        with anyio.fail_after(10):
            async with ClaudeSDKClient(opts) as client:
                await client.query("first")
                async for message in client.receive_response():
                    if isinstance(message, AssistantMessage):
                        await client.interrupt()
                    if isinstance(message, ResultMessage):
                        results.append(message)
                await client.query("second")
                async for message in client.receive_response():
                    if isinstance(message, ResultMessage):
                        results.append(message)

    started = time.monotonic()
    anyio.run(go)
    assert time.monotonic() - started < 8
    first, second = results
    assert first.is_error and first.subtype == "error_during_execution"
    assert second.result == "second answer" and not second.is_error
    assert not (workspace / "late.txt").exists()


@pytest.mark.parametrize("ignore_sigterm", [False, True])
def test_hanging_fake_leaves_partial_log(
    tmp_path: Path, workspace: Path, ignore_sigterm: bool
) -> None:
    """Driven by hand: through the SDK a hang costs its 5 s close grace period."""
    log = tmp_path / "calls.jsonl"
    scenario = tmp_path / "hang.json"
    scenario.write_text(json.dumps({"actions": [{"hang": True, "ignore_sigterm": ignore_sigterm}]}))
    env = {**os.environ, "FAKE_CLAUDE_SCENARIO": str(scenario), "FAKE_CLAUDE_LOG": str(log)}
    argv = [str(FAKE), "--output-format", "stream-json", "--model", "m1"]
    argv += ["--input-format", "stream-json"]
    with subprocess.Popen(
        argv, cwd=workspace, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        try:
            assert proc.stdin is not None and proc.stdout is not None
            init = {
                "type": "control_request",
                "request_id": "r1",
                "request": {"subtype": "initialize", "hooks": None},
            }
            user = {"type": "user", "message": {"role": "user", "content": "hang please"}}
            proc.stdin.write((json.dumps(init) + "\n" + json.dumps(user) + "\n").encode())
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            assert reply["response"]["request_id"] == "r1"

            deadline = time.monotonic() + 5
            hanging: list[dict[str, Any]] = []
            while not hanging and time.monotonic() < deadline:
                time.sleep(0.02)
                hanging = [e for e in read_log(log) if e["note"] == "hanging"]
            assert hanging, "no partial log entry"
            entry = hanging[0]
            assert entry["pid"] == proc.pid and entry["partial"]
            assert entry["prompt"] == "hang please"
            assert "--model" in entry["argv"] and entry["env"]["FAKE_CLAUDE_LOG"] == str(log)

            proc.send_signal(signal.SIGTERM)
            if ignore_sigterm:
                with pytest.raises(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.3)
                proc.kill()
                assert proc.wait(timeout=5) == -signal.SIGKILL
            else:
                assert proc.wait(timeout=5) == 128 + signal.SIGTERM
                last = read_log(log)[-1]
                assert not last["partial"] and last["note"] == "terminated by signal 15"
        finally:
            if proc.poll() is None:
                proc.kill()


def test_fake_is_an_executable_stdlib_script() -> None:
    source = FAKE.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    assert os.access(FAKE, os.X_OK)
    tree = ast.parse(source)
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert modules <= set(sys.stdlib_module_names)
