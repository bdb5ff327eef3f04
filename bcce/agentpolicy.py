"""A step's policy as Claude Code understands it, and the check of every tool call.

Two layers hold the same policy. Claude Code gets the translated tool names and ``Bash(...)``
rules, so it never offers the agent what the step does not allow. Then every tool call is
checked here, from the SDK's ``PreToolUse`` hook and its ``can_use_tool`` callback, with the
rules the gate uses (:func:`bcce.policy.command_denial`, :func:`bcce.policy.path_denial`).
After the step the executor checks the workspace changes once more, so an agent that got
around both (a bug, a misbehaving CLI) still cannot land a change the policy forbids.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bcce.policy import Effective, change_denial, command_check

READ_TOOLS = ("Read",)
SEARCH_TOOLS = ("Grep", "Glob")
EDIT_TOOLS = ("Edit", "Write", "MultiEdit")
SHELL_TOOL = "Bash"
# v1 `available_tools` -> Claude Code tool names.
TRANSLATION: Mapping[str, tuple[str, ...]] = {
    "ReadFile": READ_TOOLS,
    "Search": SEARCH_TOOLS,
    "Diff": EDIT_TOOLS,
    "Apply": EDIT_TOOLS,
    "Cmd": (SHELL_TOOL,),
    "Bash": (SHELL_TOOL,),
}
# Tools that reach outside the workspace or start agents the hook may not see; never offered.
NEVER = ("WebFetch", "WebSearch", "Task", "Agent", "NotebookEdit", "KillShell", "BashOutput")
# A Bash command may be one simple command: no lists, pipes, redirections or substitutions,
# since the allow-list can only vouch for the command it sees first.
_SHELL_SYNTAX = re.compile(r"[;&|<>`\n\r]|\$\(|\$\{|\$[A-Za-z_]")


@dataclass(frozen=True)
class ToolSet:
    """What Claude Code is told: the tools that exist, and which are pre-approved."""

    tools: tuple[str, ...]
    allowed: tuple[str, ...]
    disallowed: tuple[str, ...]


def tool_set(available: Sequence[str], policy: Effective) -> ToolSet:
    """Translate ``available_tools`` (read-only when ``max_edits: 0``) to Claude Code tools."""
    tools: list[str] = []
    for name in available:
        for tool in TRANSLATION.get(name, ()):
            if tool in EDIT_TOOLS and policy.read_only:
                continue
            if tool not in tools:
                tools.append(tool)
    allowed = [t for t in tools if t != SHELL_TOOL]
    if SHELL_TOOL in tools:
        if policy.cmd_allowlist is None:
            allowed.append(SHELL_TOOL)
        else:
            allowed += [f"Bash({entry}:*)" for entry in policy.cmd_allowlist]
    disallowed = [t for t in (*EDIT_TOOLS, SHELL_TOOL, *NEVER) if t not in tools]
    return ToolSet(tuple(tools), tuple(allowed), tuple(disallowed))


def tool_denial(
    tool: str, tool_input: Mapping[str, Any], policy: Effective, tools: ToolSet, workspace: Path
) -> str | None:
    """Why this tool call breaks the step's policy (told to the agent), or None to allow it."""
    if tool not in tools.tools:
        offered = ", ".join(tools.tools) or "none"
        return f"tool {tool} is not available to this step (available: {offered})"
    if tool == SHELL_TOOL:
        return _command_denial(str(tool_input.get("command", "")), policy)
    path = _path_argument(tool, tool_input)
    if path is None:
        return None
    inside = workspace_path(path, workspace)
    if inside is None:
        return f"{path!r} is outside the workspace"
    if tool in EDIT_TOOLS:
        if policy.read_only:
            return "this step is read-only (policy.max_edits: 0)"
        return change_denial(inside, policy)
    return None


def workspace_path(path: str, workspace: Path) -> str | None:
    """path (absolute, or relative to the workspace) as a workspace-relative POSIX path,
    symlinks resolved; None when it resolves outside the workspace."""
    root = os.path.realpath(workspace)
    full = os.path.realpath(os.path.join(root, path))
    if full == root:
        return "."
    if not full.startswith(root + os.sep):
        return None
    return Path(os.path.relpath(full, root)).as_posix()


def _path_argument(tool: str, tool_input: Mapping[str, Any]) -> str | None:
    for key in ("file_path", "notebook_path", "path"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    if tool in EDIT_TOOLS or tool in READ_TOOLS:
        return ""  # a file tool without a path: refuse rather than guess
    return None


def _command_denial(command: str, policy: Effective) -> str | None:
    if not command.strip():
        return "empty command"
    if _SHELL_SYNTAX.search(command):
        return (
            "run one simple command per Bash call: no ; & | < > ` $( or variables "
            "(the command allow-list cannot vouch for the rest of a shell line)"
        )
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"cannot parse the command: {exc}"
    return command_check(argv, policy)


def constraints(policy: Effective, tools: ToolSet) -> str:
    """The constraints the agent runs under, in words, for its prompt."""
    lines = [f"- You have {policy.timeout_seconds} seconds."]
    lines.append(f"- Tools: {', '.join(tools.tools) or 'none'}.")
    if policy.read_only:
        lines.append("- This step is read-only: do not create, edit or delete files.")
    elif policy.allowed_paths is not None:
        lines.append(f"- Change only files matching: {', '.join(policy.allowed_paths)}.")
    if policy.max_files is not None and not policy.read_only:
        lines.append(f"- Change at most {policy.max_files} files.")
    if policy.max_edits is not None and not policy.read_only:
        lines.append(f"- Change at most {policy.max_edits} lines in all.")
    if SHELL_TOOL in tools.tools:
        allowed = policy.cmd_allowlist
        what = "any command" if allowed is None else ", ".join(allowed) or "no command"
        lines.append(f"- Bash may run {what}, one simple command per call (no pipes or ;).")
    lines.append("- Stay inside the working directory. Denied tool calls are recorded.")
    return "\n".join(lines)
