"""``agent`` steps: Claude Code headless (on Bedrock) under the step's policy.

The session runs in :mod:`workers.agent_runner`, a process of its own started through the
sandbox (own process group, scrubbed environment, timeout and cancel kill the group). Around
it this executor measures what changed in the workspace (:mod:`bcce.workspace`), checks the
change against the policy a third time, and writes the step's artifacts.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from bcce import agentpolicy, policy, pricing
from bcce.artifacts import METRICS, OUTPUT, STDERR, STDOUT
from bcce.redact import Redactor, secret_values
from bcce.settings import Settings
from bcce.steptypes import StepContext, StepOutcome
from bcce.workflow import AgentStep
from bcce.workspace import Change, Tracker, WorkspaceError, runs_root
from workers.executors import prompting, transcript
from workers.sandbox import CommandError, run_command

TRANSCRIPT_JSONL = "transcript.jsonl"
TRANSCRIPT_MD = "transcript.md"
CHANGES = "changes.diff"
DISCARDED = "discarded.diff"
REQUEST = "agent-request.json"
RESULT = "agent-result.json"
# What Claude Code needs from the worker's environment to reach Bedrock, and nothing else.
AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "ANTHROPIC_BEDROCK_BASE_URL",
)
SYSTEM = (
    "You are running as a step of a bcce workflow, headless: nobody will answer questions. "
    "Do the task, then end with a short summary of what you did."
)


def agent_env(step_env: dict[str, str], worker_env: dict[str, str]) -> dict[str, str]:
    """The session's environment: the step's scrubbed env plus Bedrock access."""
    env = dict(step_env)
    env.update({k: worker_env[k] for k in AWS_ENV if k in worker_env})
    env["AWS_REGION"] = worker_env.get("AWS_REGION") or worker_env.get(
        "AWS_DEFAULT_REGION", "us-east-1"
    )
    env["CLAUDE_CODE_USE_BEDROCK"] = "1"
    # Only Bedrock: no telemetry, error reporting or auto-update traffic from a worker.
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    env["DISABLE_AUTOUPDATER"] = "1"
    return env


def execute(ctx: StepContext) -> StepOutcome:
    """Run one attempt of an agent step."""
    step = ctx.step
    assert isinstance(step, AgentStep)
    if not (step.prompt or "").strip():
        return _failed(ctx, f"agent step {step.id!r} has no prompt: add `prompt` or `prompt_file`")
    seconds = max(1, math.ceil(ctx.timeout_seconds))
    effective = ctx.policy or policy.effective(step, policy.Limits(seconds, seconds))
    tools = agentpolicy.tool_set(step.available_tools, effective)
    run_dir = ctx.step_dir.parent
    try:
        tracker = Tracker.for_workspace(
            ctx.workspace, run_dir / ".track", runs_root(run_dir, ctx.workspace)
        )
        before = tracker.snapshot()
    except WorkspaceError as exc:
        return _failed(ctx, f"cannot track the workspace: {exc}")

    env = agent_env(dict(ctx.env), dict(os.environ))
    redactor = Redactor(secret_values(env))
    model = step.model or ctx.workflow_model
    request = {
        "prompt": prompting.build(ctx, agentpolicy.constraints(effective, tools)),
        "system": SYSTEM,
        "policy": effective.to_json(),
        "tools": {"tools": tools.tools, "allowed": tools.allowed, "disallowed": tools.disallowed},
        "workspace": str(ctx.workspace),
        "model": model,
        "max_turns": step.max_turns,
        "max_budget_usd": effective.max_cost_usd,
        "resume": _previous_session(ctx),
        "cli_path": _claude_bin(),
        "secrets": secret_values(env),
        "transcript": str(ctx.step_dir / TRANSCRIPT_JSONL),
        "result": str(ctx.step_dir / RESULT),
    }
    request_path = ctx.step_dir / REQUEST
    request_path.write_text(json.dumps(request), encoding="utf-8")
    (ctx.step_dir / RESULT).unlink(missing_ok=True)
    try:
        ran = run_command(
            [sys.executable, "-m", "workers.agent_runner", str(request_path)],
            cwd=ctx.workspace,
            env=env,
            timeout_seconds=ctx.timeout_seconds,
            stdout_path=ctx.step_dir / STDOUT,
            stderr_path=ctx.step_dir / STDERR,
            output_cap_bytes=ctx.output_cap_bytes,
            cancel=ctx.cancel,
        )
    except CommandError as exc:
        return _failed(ctx, f"cannot start the agent runner: {exc}")
    finally:
        request_path.unlink(missing_ok=True)  # it holds the secrets list
    session = _read_json(ctx.step_dir / RESULT)

    try:
        after = tracker.snapshot()
        changes = tracker.changes(before, after)
        diff = tracker.diff(before, after)
    except WorkspaceError as exc:
        return _failed(ctx, f"cannot measure the workspace changes: {exc}")
    violation = _violation(changes, effective)
    if violation:
        tracker.restore(before, [c.path for c in changes])
        (ctx.step_dir / DISCARDED).write_bytes(diff)  # kept for review, never applied
        diff = b""
    (ctx.step_dir / CHANGES).write_bytes(diff)

    text = session.get("result") or session.get("text") or ""
    (ctx.step_dir / OUTPUT).write_text(text + ("\n" if text else ""), encoding="utf-8")
    transcript.render(ctx.step_dir / TRANSCRIPT_JSONL, ctx.step_dir / TRANSCRIPT_MD, redactor)
    metrics = _metrics(session, model, changes, violation is not None)
    error = _error(ran, session, step, violation, ctx.timeout_seconds)
    return StepOutcome(
        ok=error is None,
        exit_code=ran.exit_code,
        error=error,
        timed_out=ran.timed_out,
        cancelled=ran.cancelled,
        metrics=metrics,
    )


def _error(
    ran: Any, session: dict[str, Any], step: AgentStep, violation: str | None, timeout: float
) -> str | None:
    if ran.cancelled:
        return "stopped because the run ended; the agent's process group was killed"
    if ran.timed_out:
        return f"timed out after {timeout:g}s; the agent's process group was killed"
    if violation:
        return f"policy violation: {violation}; the step's changes were discarded"
    if ran.exit_code is None:
        return f"the agent runner was killed by signal {ran.signal}"
    if "session_id" not in session:
        reason = session.get("error") or f"the agent runner exited with code {ran.exit_code}"
        return f"Claude Code did not finish: {reason}"
    if session.get("is_error"):
        detail = "; ".join(session.get("errors") or []) or session.get("result") or ""
        return f"Claude Code ended with an error ({session.get('subtype')}): {detail}".rstrip(": ")
    denials = all_denials(session)
    if denials and step.fail_on_denial:
        first = denials[0]
        return (
            f"{len(denials)} tool call(s) denied by policy, first {first['tool']}: "
            f"{first['reason']} (set fail_on_denial: false to only record denials)"
        )
    if session.get("error"):
        return f"Claude Code failed: {session['error']}"
    return None


def _violation(changes: list[Change], effective: policy.Effective) -> str | None:
    if not changes:
        return None
    if effective.read_only:
        return f"the step is read-only (max_edits: 0) but changed {changes[0].path!r}"
    for change in changes:
        reason = policy.change_denial(change.path, effective)
        if reason:
            return reason
    if effective.max_files is not None and len(changes) > effective.max_files:
        return f"{len(changes)} files changed, policy.max_files is {effective.max_files}"
    lines = sum(c.added + c.removed for c in changes)
    if effective.max_edits is not None and lines > effective.max_edits:
        return f"{lines} lines changed, policy.max_edits is {effective.max_edits}"
    return None


def all_denials(session: dict[str, Any]) -> list[dict[str, Any]]:
    """bcce's own denials, plus the tool calls Claude Code refused by its permission rules
    (the disallowed list) before asking bcce; each call once."""
    ours: list[dict[str, Any]] = list(session.get("denials") or [])
    seen = {d.get("tool_use_id") for d in ours if d.get("tool_use_id")}
    for denied in session.get("permission_denials") or []:
        if not isinstance(denied, dict) or denied.get("tool_use_id") in seen:
            continue
        ours.append(
            {
                "tool": denied.get("tool_name"),
                "input": denied.get("tool_input"),
                "reason": "not among the step's tools (refused by Claude Code's permission rules)",
                "via": "claude-code",
                "tool_use_id": denied.get("tool_use_id"),
            }
        )
    return ours


def _metrics(
    session: dict[str, Any], model: str | None, changes: list[Change], discarded: bool
) -> dict[str, Any]:
    usage = {k: int(v) for k, v in (session.get("usage") or {}).items() if isinstance(v, int)}
    reported = session.get("total_cost_usd")
    cost = float(reported) if isinstance(reported, int | float) else None
    if cost is None:
        cost = pricing.cost_usd(model, usage)
    return {
        "session_id": session.get("session_id"),
        "model": model,
        "turns": session.get("num_turns"),
        "duration_ms": session.get("duration_ms"),
        "duration_api_ms": session.get("duration_api_ms"),
        "usage": usage,
        "cost_usd": cost,
        "cost_source": "claude-code" if isinstance(reported, int | float) else "price-table",
        "model_usage": session.get("model_usage") or {},
        "denials": all_denials(session),
        "permission_denials": session.get("permission_denials") or [],
        "files_changed": len(changes),
        "lines_changed": sum(c.added + c.removed for c in changes),
        "changes_discarded": discarded,
    }


def _claude_bin() -> str | None:
    """BCCE_CLAUDE_BIN as a path, or a bare name looked up on PATH (as ``bcce doctor`` does)."""
    configured = Settings().claude_bin
    if configured is None:
        return None
    if len(configured.parts) == 1:
        return shutil.which(str(configured)) or str(configured)
    return str(configured.resolve())


def _previous_session(ctx: StepContext) -> str | None:
    """On a retry, the session of the attempt before, so Claude Code resumes it."""
    if ctx.attempt <= 1:
        return None
    previous = _read_json(ctx.step_dir / METRICS)
    session = previous.get("session_id")
    return session if isinstance(session, str) and session else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _failed(ctx: StepContext, error: str) -> StepOutcome:
    (ctx.step_dir / OUTPUT).write_text("", encoding="utf-8")
    (ctx.step_dir / STDERR).write_text(f"bcce: {error}\n", encoding="utf-8")
    return StepOutcome(ok=False, error=error)
