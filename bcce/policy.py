"""Policy decisions for one step: pure functions over the workflow and the run's state.

The policy-check task calls :func:`decide` before every step; ``--dry-run`` and
``bcce workflow validate`` call :func:`effective` to show what a step will run under.
What this module enforces today is the v1 ``policy`` block and ``env.max_runtime_seconds``;
rules are small functions, each named, so an organisation policy can add its own.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pathspec

from bcce.workflow import CmdStep, Step, Workflow

if TYPE_CHECKING:
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

    @property
    def read_only(self) -> bool:
        """``max_edits: 0``: the step may not change a file."""
        return self.max_edits == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """The gate's answer for one step: allow (with the timeout to enforce) or deny, and why."""

    allowed: bool
    rule: str
    reason: str
    timeout_seconds: float
    deadline_bound: bool = False
    """The timeout was cut to what is left of the run's ``max_runtime_seconds``."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        """Inverse of :meth:`to_json`."""
        return cls(**data)


def effective(step: Step, limits: Limits) -> Effective:
    """The effective policy of a step."""
    policy = step.policy
    timeout = policy.timeout_seconds if policy and policy.timeout_seconds else None
    return Effective(
        timeout_seconds=timeout or limits.default_timeout_seconds,
        cmd_allowlist=policy.cmd_allowlist if policy else None,
        allowed_paths=policy.allowed_paths if policy else None,
        max_files=policy.max_files if policy else None,
        max_edits=policy.max_edits if policy else None,
        max_cost_usd=policy.max_cost_usd if policy else None,
    )


def decide(
    workflow: Workflow,
    step: Step,
    limits: Limits,
    *,
    run_active: bool,
    elapsed_seconds: float,
    spent_usd: float = 0.0,
) -> Decision:
    """Whether ``step`` may run now, for a run that has been going for ``elapsed_seconds``
    and has spent ``spent_usd`` on model calls."""
    eff = effective(step, limits)
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
    if isinstance(step, CmdStep):
        reason = command_denial(step.argv(), eff.cmd_allowlist)
        if reason:
            return deny("cmd_allowlist", reason)
    cost_cap = workflow.env.max_cost_usd
    if cost_cap is not None and spent_usd >= cost_cap:
        return deny(
            "budget",
            f"the run has spent ${spent_usd:.4f} of its env.max_cost_usd ${cost_cap:g}",
        )
    budget = workflow.env.max_runtime_seconds
    if budget is not None:
        left = budget - elapsed_seconds
        if left <= 0:
            return deny("deadline", f"env.max_runtime_seconds ({budget}s) is used up")
        if left < timeout:
            return Decision(True, "allow", "within policy", left, deadline_bound=True)
    return Decision(True, "allow", "within policy", timeout)


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
