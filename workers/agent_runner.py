"""One Claude Code session for an agent step, driven through the Claude Agent SDK.

The agent executor starts this module as a process of its own::

    python -m workers.agent_runner REQUEST.json

so that Claude Code (a child of this process, as the SDK starts it) inherits only the
environment the executor passes, and so a timeout or cancel stops the whole process group:
this runner, the CLI and whatever the agent started. The request names the prompt, the
options and the step's effective policy; every tool call is checked against that policy
from the ``PreToolUse`` hook and from ``can_use_tool``. The message stream goes to
``transcript.jsonl`` (redacted) as it arrives; the outcome to the request's ``result`` file.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    HookMatcher,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    TextBlock,
    ToolPermissionContext,
    query,
)

from bcce.agentpolicy import ToolSet, tool_denial
from bcce.policy import Effective
from bcce.redact import Redactor


class Session:
    """The policy callbacks and what they decided, for one run of Claude Code."""

    def __init__(self, request: dict[str, Any], redactor: Redactor) -> None:
        self.policy = Effective(**request["policy"])
        self.tools = ToolSet(**{k: tuple(v) for k, v in request["tools"].items()})
        self.workspace = Path(request["workspace"])
        self.redactor = redactor
        self.denials: list[dict[str, Any]] = []

    def check(self, tool: str, tool_input: dict[str, Any], via: str, use_id: str | None) -> str:
        """The denial reason for a tool call ('' to allow); every denial is recorded."""
        try:
            reason = tool_denial(tool, tool_input, self.policy, self.tools, self.workspace)
        except Exception as exc:  # fail closed: a rule that breaks denies
            reason = f"the policy check failed ({type(exc).__name__}: {exc})"
        if reason:
            self.denials.append(
                {
                    "tool": tool,
                    "input": self.redactor.json(tool_input),
                    "reason": reason,
                    "via": via,
                    "tool_use_id": use_id,
                    "at": time.time(),
                }
            )
        return reason or ""

    async def pre_tool_use(
        self, hook_input: Any, tool_use_id: str | None, context: Any
    ) -> dict[str, Any]:
        """The ``PreToolUse`` hook: deny with a reason the agent sees, or no opinion."""
        reason = self.check(
            str(hook_input.get("tool_name", "")),
            dict(hook_input.get("tool_input") or {}),
            "hook",
            tool_use_id,
        )
        if not reason:
            return {}
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": f"bcce policy: {reason}",
            }
        }

    async def can_use_tool(
        self, tool: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        """Claude Code's permission prompt, answered by the same policy."""
        reason = self.check(tool, tool_input, "can_use_tool", context.tool_use_id)
        if reason:
            return PermissionResultDeny(message=f"bcce policy: {reason}")
        return PermissionResultAllow(updated_input=tool_input)


def options(request: dict[str, Any], session: Session) -> ClaudeAgentOptions:
    """The SDK options of the request; nothing from user or project settings is loaded."""
    return ClaudeAgentOptions(
        tools=list(session.tools.tools),
        allowed_tools=list(session.tools.allowed),
        disallowed_tools=list(session.tools.disallowed),
        system_prompt={"type": "preset", "preset": "claude_code", "append": request["system"]},
        permission_mode="default",
        can_use_tool=session.can_use_tool,
        hooks={
            "PreToolUse": [
                HookMatcher(
                    matcher=None,
                    hooks=[session.pre_tool_use],  # type: ignore[list-item]
                    on_failure="block",  # a hook that fails denies the call
                )
            ]
        },
        cwd=str(session.workspace),
        model=request.get("model"),
        max_turns=request.get("max_turns"),
        max_budget_usd=request.get("max_budget_usd"),
        resume=request.get("resume"),
        cli_path=request.get("cli_path"),
        # A repository's .claude/settings.json could allow tools or add hooks: ignore it.
        setting_sources=[],
    )


def _plain(message: Any) -> dict[str, Any]:
    body = asdict(message) if is_dataclass(message) and not isinstance(message, type) else {}
    return {"type": type(message).__name__, **body}


async def run(request: dict[str, Any], transcript: TextIO) -> dict[str, Any]:
    """Run the session; returns what the executor needs to know of it."""
    redactor = Redactor(request.get("secrets", ()))
    session = Session(request, redactor)
    texts: list[str] = []
    result: ResultMessage | None = None
    error: str | None = None
    started = time.monotonic()
    try:
        async for message in query(prompt=request["prompt"], options=options(request, session)):
            transcript.write(json.dumps(redactor.json(_plain(message)), default=str) + "\n")
            transcript.flush()
            if isinstance(message, AssistantMessage):
                texts += [b.text for b in message.content if isinstance(b, TextBlock)]
            elif isinstance(message, ResultMessage):
                result = message
    except Exception as exc:  # the CLI failed or exited non-zero; what it said is kept
        error = f"{type(exc).__name__}: {exc}"
    outcome: dict[str, Any] = {
        "error": redactor.text(error) if error else None,
        "denials": session.denials,
        "wall_seconds": round(time.monotonic() - started, 3),
        "text": redactor.text(texts[-1]) if texts else "",
    }
    if result is not None:
        outcome.update(
            {
                "session_id": result.session_id,
                "subtype": result.subtype,
                "is_error": result.is_error,
                "result": redactor.text(result.result or ""),
                "num_turns": result.num_turns,
                "duration_ms": result.duration_ms,
                "duration_api_ms": result.duration_api_ms,
                "usage": result.usage or {},
                "total_cost_usd": result.total_cost_usd,
                "model_usage": result.model_usage or {},
                "permission_denials": redactor.json(result.permission_denials or []),
                "errors": redactor.json(result.errors or []),
            }
        )
    return outcome


def main(argv: list[str]) -> int:
    """Entry point: run the request in argv[1]; exit 0 once its outcome is written."""
    warnings.simplefilter("ignore")  # the SDK's advisories are not for step logs
    request = json.loads(Path(argv[1]).read_text("utf-8"))
    with Path(request["transcript"]).open("w", encoding="utf-8") as transcript:
        outcome = anyio.run(run, request, transcript)
    Path(request["result"]).write_text(json.dumps(outcome, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
