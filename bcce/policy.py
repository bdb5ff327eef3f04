"""Policy decisions for one step: pure functions over the workflow and the run's state.

The policy-check task calls :func:`decide` before every step; ``--dry-run`` and
``bcce workflow validate`` call :func:`effective` to show what a step will run under.
What this module enforces today is the v1 ``policy`` block and ``env.max_runtime_seconds``;
rules are small functions, each named, so an organisation policy can add its own.
"""

from __future__ import annotations

import fnmatch
import functools
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pathspec

from bcce.workflow import CmdStep, Step, Workflow

if TYPE_CHECKING:
    from bcce.orgpolicy import Rules
    from bcce.settings import Settings


@dataclass(frozen=True)
class Limits:
    """Deployment-wide limits from settings."""

    default_timeout_seconds: int
    max_timeout_seconds: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings set."""
        return cls(settings.default_step_timeout_seconds, settings.max_step_timeout_seconds)


@dataclass(frozen=True)
class Effective:
    """The policy a step runs under, after defaults and limits."""

    timeout_seconds: int
    cmd_allowlist: tuple[str, ...] | None
    """None: this layer sets no command restriction. Empty: no command may run."""
    allowed_paths: tuple[str, ...] | None
    max_files: int | None
    max_edits: int | None
    max_cost_usd: float | None = None
    # From the organisation policy (bcce.orgpolicy):
    org_cmd_allowlist: tuple[str, ...] | None = None
    cmd_denylist: tuple[str, ...] = ()
    denied_paths: tuple[str, ...] = ()
    run_max_cost_usd: float | None = None
    approval_required: bool = False
    """apply_diff: a person must approve, whatever ``approve`` or ``--approve-all`` say."""
    env_pass: tuple[str, ...] = ()
    """Worker environment variables the step may see."""
    approvers: tuple[str, ...] | None = None
    """apply_diff: who may approve (fnmatch patterns); None: anyone."""
    self_approval: bool = True

    @property
    def read_only(self) -> bool:
        """``max_edits: 0``: the step may not change a file."""
        return self.max_edits == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Effective:
        """Inverse of :meth:`to_json` (as the gate signed it)."""
        tuples: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**tuples)


@dataclass(frozen=True)
class Decision:
    """The gate's answer for one step: allow (with the timeout to enforce) or deny, and why."""

    allowed: bool
    rule: str
    reason: str
    timeout_seconds: float
    deadline_bound: bool = False
    """The timeout was cut to what is left of the run's ``max_runtime_seconds``."""
    effective: dict[str, Any] | None = None
    """On allow, the policy the step runs under; the gate signs it into the grant."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        """Inverse of :meth:`to_json`."""
        return cls(**data)


def _least(*values: float | None) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def effective(
    step: Step, limits: Limits, org: Rules | None = None, *, ci: bool = False
) -> Effective:
    """The effective policy of a step: its own, narrowed by the organisation's rules."""
    policy = step.policy
    timeout = policy.timeout_seconds if policy and policy.timeout_seconds else None
    own = Effective(
        timeout_seconds=timeout or limits.default_timeout_seconds,
        cmd_allowlist=policy.cmd_allowlist if policy else None,
        allowed_paths=policy.allowed_paths if policy else None,
        max_files=policy.max_files if policy else None,
        max_edits=policy.max_edits if policy else None,
        max_cost_usd=policy.max_cost_usd if policy else None,
    )
    if org is None:
        return own
    approvals = org.approvals.apply_diff
    return replace(
        own,
        timeout_seconds=_least(own.timeout_seconds, org.max_timeout_seconds)
        if timeout is None
        else own.timeout_seconds,
        max_cost_usd=_least(own.max_cost_usd, org.max_cost_usd.step),
        org_cmd_allowlist=org.commands.allow,
        cmd_denylist=org.commands.deny,
        denied_paths=org.paths.deny,
        run_max_cost_usd=org.max_cost_usd.run,
        approval_required=approvals == "always" or (approvals == "ci" and ci),
        env_pass=org.env.pass_,
        approvers=org.approvals.approvers,
        self_approval=org.approvals.self_approval,
    )


def approver_denial(eff: Effective, approver: str, submitter: str | None) -> str | None:
    """Why approver may not approve this step's diff, or None when they may."""
    if not eff.self_approval and submitter and approver == submitter:
        return f"{approver} submitted this run and the org policy forbids approving one's own"
    if eff.approvers is not None and not any(
        fnmatch.fnmatchcase(approver, p) for p in eff.approvers
    ):
        return f"{approver} is not among the approvers the org policy names"
    return None


def _matches(model: str | None, patterns: Sequence[str]) -> bool:
    return bool(model) and any(fnmatch.fnmatchcase(str(model), p) for p in patterns)


def command_check(argv: Sequence[str], eff: Effective) -> str | None:
    """Why argv may not run under the effective policy (step's list, org's list, org's deny
    list), or None when it may."""
    reason = command_denial(argv, eff.cmd_allowlist)
    if reason:
        return reason
    if eff.org_cmd_allowlist is not None and command_denial(argv, eff.org_cmd_allowlist):
        return f"{shlex.join(argv[:2])!r} is not among the commands the org policy allows"
    for entry in eff.cmd_denylist:
        if command_denial(argv, (entry,)) is None:
            return f"{shlex.join(argv[:2])!r} is denied by the org policy ({entry!r})"
    return None


def change_denial(path: str, eff: Effective) -> str | None:
    """Why a workspace-relative path may not be changed under the effective policy."""
    reason = path_denial(path, eff.allowed_paths)
    if reason is None and eff.denied_paths and path_rules(eff.denied_paths).match_file(path):
        return f"{path!r} is in a path the org policy protects {list(eff.denied_paths)}"
    return reason


def org_denial(
    workflow: Workflow, step: Step, org: Rules, timeout_asked: int | None, shell: bool
) -> tuple[str, str] | None:
    """(rule, reason) when the organisation policy forbids the step whatever happens."""
    if org.step_types is not None and step.type not in org.step_types:
        return "org_step_type", (
            f"step type {step.type!r} is not allowed by the org policy "
            f"(allowed: {', '.join(org.step_types)})"
        )
    model = step.model or workflow.model
    calls_model = step.type in ("agent", "prompt")
    if org.models is not None and calls_model and not _matches(model, org.models):
        return "org_model", (
            f"model {model!r} is not allowed by the org policy (allowed: {', '.join(org.models)})"
        )
    if shell and not org.commands.shell:
        return "org_shell", "`shell: true` is not allowed by the org policy"
    cap = org.max_timeout_seconds
    if cap is not None and timeout_asked is not None and timeout_asked > cap:
        return "org_timeout", (
            f"policy.timeout_seconds {timeout_asked} is above the org policy's maximum {cap}"
        )
    return None


def decide(
    workflow: Workflow,
    step: Step,
    limits: Limits,
    *,
    run_active: bool,
    elapsed_seconds: float,
    spent_usd: float = 0.0,
    org: Rules | None = None,
    ci: bool = False,
) -> Decision:
    """Whether ``step`` may run now, for a run that has been going for ``elapsed_seconds``
    and has spent ``spent_usd`` on model calls, under the org's rules when there are any."""
    eff = effective(step, limits, org, ci=ci)
    timeout = float(eff.timeout_seconds)

    def deny(rule: str, reason: str) -> Decision:
        return Decision(False, rule, reason, timeout)

    if not run_active:
        return deny("run_active", "the run is no longer active (cancelled, denied or finished)")
    if eff.timeout_seconds > limits.max_timeout_seconds:
        return deny(
            "timeout",
            f"policy.timeout_seconds {eff.timeout_seconds} is above the maximum "
            f"{limits.max_timeout_seconds} (BCCE_MAX_STEP_TIMEOUT_SECONDS)",
        )
    if org is not None:
        asked = step.policy.timeout_seconds if step.policy else None
        found = org_denial(workflow, step, org, asked, isinstance(step, CmdStep) and step.shell)
        if found:
            return deny(*found)
    if isinstance(step, CmdStep):
        reason = command_denial(step.argv(), eff.cmd_allowlist)
        if reason:
            return deny("cmd_allowlist", reason)
        reason = command_check(step.argv(), eff)
        if reason:
            return deny("org_commands", reason)
    for cap, name in (
        (workflow.env.max_cost_usd, "its env.max_cost_usd"),
        (eff.run_max_cost_usd, "the org policy's run budget"),
    ):
        if cap is not None and spent_usd >= cap:
            return deny("budget", f"the run has spent ${spent_usd:.4f} of {name} ${cap:g}")
    granted = eff.to_json()
    budget = workflow.env.max_runtime_seconds
    if budget is not None:
        left = budget - elapsed_seconds
        if left <= 0:
            return deny("deadline", f"env.max_runtime_seconds ({budget}s) is used up")
        if left < timeout:
            return Decision(True, "allow", "within policy", left, True, granted)
    return Decision(True, "allow", "within policy", timeout, effective=granted)


def static_denial(
    workflow: Workflow, step: Step, limits: Limits, org: Rules | None
) -> tuple[str, str] | None:
    """(rule, reason) when the step would be denied whatever the run's state: what
    ``bcce workflow validate`` and ``bcce policy show`` report before anything runs."""
    decision = decide(
        workflow, step, limits, run_active=True, elapsed_seconds=0.0, spent_usd=0.0, org=org
    )
    if decision.allowed or decision.rule in ("budget", "deadline", "run_active"):
        return None
    return decision.rule, decision.reason


def command_denial(argv: Sequence[str], allowlist: Sequence[str] | None) -> str | None:
    """Why argv may not run under allowlist, or None when it may.

    An entry allows the commands whose argv starts with its words: ``git`` allows every git
    command, ``git status`` only that one. An entry with a slash matches that exact path;
    one without matches the executable's name only when argv[0] has no slash either, so a
    workspace script ``./git`` is not mistaken for ``git``.
    """
    if allowlist is None:
        return None
    if not allowlist:
        return f"{argv[0]!r} is not allowed: policy.cmd_allowlist is empty (no commands)"
    for entry in allowlist:
        try:
            words = shlex.split(entry)
        except ValueError:
            continue  # a malformed entry allows nothing (the loader already rejects them)
        if words and list(argv[: len(words)]) == words:
            return None
    return f"{shlex.join(argv[:2])!r} is not in policy.cmd_allowlist {list(allowlist)}"


@functools.lru_cache(maxsize=256)
def path_rules(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    """allowed_paths as gitignore-style rules: ``src/**``, ``!src/secrets/**``, ``*.md``."""
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def _is_git_dir(name: str) -> bool:
    # As git's own protection: case-insensitive, trailing dots and spaces ignored (NTFS,
    # HFS+), and the NTFS short name.
    folded = name.rstrip(". ").lower()
    return folded in (".git", "git~1")


def path_denial(path: str, allowed_paths: Sequence[str] | None) -> str | None:
    """Why a workspace-relative path may not be changed, or None when it may.

    The path must be relative, normalised and stay inside the workspace (no ``..``, nothing
    under ``.git/``); with ``allowed_paths`` set it must also match those rules, the last
    matching rule winning as in .gitignore (so ``!`` excludes).
    """
    pure = PurePosixPath(path)
    if not path or pure.is_absolute():
        return f"{path!r} is not a path inside the workspace"
    if ".." in pure.parts:
        return f"{path!r} leaves the workspace (..)"
    if any(_is_git_dir(part) for part in pure.parts):
        return f"{path!r} is inside a .git folder"
    if allowed_paths is None:
        return None
    if not path_rules(tuple(allowed_paths)).match_file(str(pure)):
        return f"{path!r} is outside policy.allowed_paths {list(allowed_paths)}"
    return None
