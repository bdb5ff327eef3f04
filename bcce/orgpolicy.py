"""The organisation policy: the most any workflow may do, whatever its own ``policy`` says.

A YAML file (``BCCE_POLICY_FILE``; a ConfigMap in Kubernetes), read by the policy pool for
every decision and by ``bcce workflow validate`` and ``bcce policy show``::

    version: 1
    step_types: [cmd, agent, prompt, apply_diff]   # the types workflows may use
    models: ["*anthropic.claude-sonnet-4*", "*anthropic.claude-haiku-4*"]   # fnmatch
    commands:
      allow: [git, "python3 -m pytest", make]      # as cmd_allowlist entries
      deny: [rm, curl, "git push"]                 # never, even when allowed
      shell: false                                 # may steps use `shell: true`
    paths:
      deny: [".github/**", "**/*.pem", "infra/**"] # never changed (gitignore rules)
    max_timeout_seconds: 3600
    max_cost_usd: {step: 5, run: 25}
    approvals:
      apply_diff: always                           # always | ci | optional
    env:
      pass: [HTTPS_PROXY]                          # worker variables steps may see
    teams:                                         # per env.team: replaces the keys it sets
      payments: {max_cost_usd: {step: 10, run: 50}}

The effective policy of a step is the most restrictive combination of this and the step's
own (see :func:`bcce.policy.effective`): a workflow can narrow what it may do, never widen
it. A file that cannot be read or does not validate denies every step (fail closed).
"""

from __future__ import annotations

import functools
import os
import shlex
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from bcce.errors import UsageError


class Rule(BaseModel):
    """Base of the policy file's blocks: unknown keys are errors (an unknown rule denies)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Commands(Rule):
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    shell: bool = True


class Paths(Rule):
    deny: tuple[str, ...] = ()


class CostCaps(Rule):
    step: PositiveFloat | None = None
    run: PositiveFloat | None = None


class Approvals(Rule):
    apply_diff: Literal["always", "ci", "optional"] = "optional"
    approvers: tuple[str, ...] | None = None
    """fnmatch patterns of who may approve (STS ARNs or user@host); None: anyone."""
    self_approval: bool = True
    """Whether whoever submitted a run may approve its diffs."""
    """always: a person approves every apply_diff (``approve: true`` and ``--approve-all``
    are ignored); ci: the same for runs submitted from CI (``CI`` set); optional: as the
    workflow says."""


class EnvRules(Rule):
    pass_: tuple[str, ...] = Field(default=(), alias="pass")


class Rules(Rule):
    """What one team (or everyone) may do."""

    step_types: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    commands: Commands = Commands()
    paths: Paths = Paths()
    max_timeout_seconds: PositiveInt | None = None
    max_cost_usd: CostCaps = CostCaps()
    approvals: Approvals = Approvals()
    env: EnvRules = EnvRules()


class OrgPolicy(Rules):
    """The whole file: rules for everyone, and per-team replacements."""

    version: Literal[1]
    teams: dict[str, Rules] = {}

    def for_team(self, team: str | None) -> Rules:
        """The rules for a run labelled env.team (the team's keys replace the base's)."""
        base = self.model_dump(exclude={"version", "teams"}, by_alias=True)
        override = self.teams.get(team or "")
        if override is not None:
            base.update(override.model_dump(exclude_unset=True, by_alias=True))
        return Rules.model_validate(base)


class PolicyFileError(UsageError):
    """The organisation policy cannot be used (every step is then denied)."""


def load(path: Path) -> OrgPolicy:
    """Read and validate the policy file; PolicyFileError names the file and what is wrong."""
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise PolicyFileError(f"cannot read the org policy {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"the org policy {path} is not valid YAML: {exc}") from None
    try:
        policy = OrgPolicy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise PolicyFileError(
            f"the org policy {path} is invalid at {where}: {first['msg']} "
            f"({exc.error_count()} problem(s))"
        ) from None
    for entry in (*(policy.commands.allow or ()), *policy.commands.deny):
        try:
            if not shlex.split(entry):
                raise ValueError("empty")
        except ValueError as exc:
            raise PolicyFileError(f"the org policy {path}: command {entry!r}: {exc}") from None
    return policy


def current(path: Path | None) -> OrgPolicy | None:
    """The policy at path as it is now (re-read when the file changes, as a ConfigMap does)."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise PolicyFileError(f"cannot read the org policy {path}: {exc.strerror or exc}") from None
    return _cached(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached(path: Path, mtime_ns: int, size: int) -> OrgPolicy:
    return load(path)
