"""The BCCE v1 workflow format as pydantic models; pure, no I/O.

A step is validated by the model of its step type (see ``bcce.steptypes``), so plugins add
keys of their own while every step shares the v1 keys declared on :class:`Step`.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SerializeAsAny,
    field_validator,
    model_validator,
)

STEP_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
# `{{ steps.<id>.output }}` (text of an earlier step's output.txt) and `.output_file` (its path).
TEMPLATE = re.compile(r"\{\{\s*steps\.([a-z][a-z0-9_]*)\.(output|output_file)\s*\}\}")

COST_LABELS = ("team", "project")
Tool = Literal["ReadFile", "Search", "Diff", "Apply", "Cmd", "Bash"]
OnError = Literal["fail", "continue", "retry"]


class Model(BaseModel):
    """Base of every workflow record: unknown keys are errors, records are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Model):
    """``policy.resources``: limits on a cmd step's processes (lower than the worker's only)."""

    cpu_seconds: PositiveInt | None = None
    memory_mb: PositiveInt | None = None
    file_size_mb: PositiveInt | None = None
    open_files: PositiveInt | None = None
    processes: PositiveInt | None = None


class StepPolicy(Model):
    """The v1 ``policy`` block of a step."""

    timeout_seconds: PositiveInt | None = None
    max_files: NonNegativeInt | None = None
    max_edits: NonNegativeInt | None = None
    allowed_paths: tuple[str, ...] | None = None
    cmd_allowlist: tuple[str, ...] | None = None
    max_cost_usd: PositiveFloat | None = None
    """The most one step (all its attempts) may spend on model calls."""
    allow_binary: bool | None = None
    """apply_diff: whether a binary patch may be applied (default: no)."""
    resources: Resources | None = None

    @field_validator("cmd_allowlist")
    @classmethod
    def _entries_are_commands(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for entry in value or ():
            try:
                words = shlex.split(entry)
            except ValueError as exc:
                raise ValueError(f"cmd_allowlist entry {entry!r}: {exc}") from None
            if not words:
                raise ValueError("cmd_allowlist entries cannot be empty")
        return value


class Inputs(Model):
    """The v1 ``inputs`` block: files an agent or prompt step reads."""

    paths: tuple[str, ...] = ()
    file_size_limit_kb: PositiveInt | None = None


class Step(Model):
    """Keys every step accepts, whatever its type."""

    id: str = Field(pattern=STEP_ID_PATTERN)
    type: str
    on_error: OnError = "fail"
    retries: int | None = Field(default=None, ge=0, le=20)
    approve: bool = False
    available_tools: tuple[Tool, ...] = ()
    policy: StepPolicy | None = None
    inputs: Inputs | None = None
    model: str | None = None
    prompt_file: str | None = None
    prompt: str | None = None
    command: str | tuple[str, ...] | None = None

    @property
    def max_attempts(self) -> int:
        """How many times the step may run: retries count only with ``on_error: retry``."""
        if self.on_error != "retry":
            return 1
        return 1 + (2 if self.retries is None else self.retries)

    def referenced_steps(self) -> set[str]:
        """Ids of earlier steps whose outputs this step's templates use."""
        texts = [self.prompt or ""]
        if isinstance(self.command, str):
            texts.append(self.command)
        elif self.command:
            texts.extend(self.command)
        return {m.group(1) for text in texts for m in TEMPLATE.finditer(text)}


class CmdStep(Step):
    """``type: cmd``: an allow-listed command, run as argv (a shell only with ``shell: true``)."""

    shell: bool = False

    @model_validator(mode="after")
    def _needs_command(self) -> CmdStep:
        if not self.command:
            raise ValueError("a cmd step needs `command`")
        if self.shell and not isinstance(self.command, str):
            raise ValueError("with `shell: true`, write `command` as one string")
        try:
            argv = self.argv()
        except ValueError as exc:
            raise ValueError(f"cannot split the command into arguments: {exc}") from None
        if not argv:
            raise ValueError("`command` is empty")
        if TEMPLATE.search(argv[0]):
            raise ValueError("the executable itself cannot come from a template")
        return self

    def argv(self) -> list[str]:
        """The argv the step runs; ``sh -c`` when it asks for a shell.

        A template stays inside the one argument it is written in, quoted or not.
        """
        if self.shell:
            return ["sh", "-c", str(self.command)]
        if not isinstance(self.command, str):
            return list(self.command or ())
        templates: list[str] = []

        def hide(match: re.Match[str]) -> str:
            templates.append(match.group(0))
            return f"\0{len(templates) - 1}\0"

        words = shlex.split(TEMPLATE.sub(hide, self.command))
        return [re.sub(r"\0(\d+)\0", lambda m: templates[int(m.group(1))], w) for w in words]


class PromptStep(Step):
    """``type: prompt``: one model call."""

    @model_validator(mode="after")
    def _needs_prompt(self) -> PromptStep:
        if not (self.prompt or self.prompt_file):
            raise ValueError("a prompt step needs `prompt_file` or an inline `prompt`")
        return self


class AgentStep(Step):
    """``type: agent``: Claude Code headless under the step's policy."""

    max_turns: PositiveInt | None = None
    fail_on_denial: bool = True
    """A tool call the policy denied fails the step (else it is only recorded)."""

    @model_validator(mode="after")
    def _needs_policy(self) -> AgentStep:
        if self.policy is None:
            raise ValueError("an agent step needs a `policy` block")
        return self


ApplyTarget = Literal["worktree", "branch", "patch"]


class ApplyDiffStep(Step):
    """``type: apply_diff``: apply the run's changes behind an approval gate.

    The diff is the combined change of the steps before it, or one step's (``from``), or a
    patch file (``patch_file``, read at load time into ``patch``).
    """

    model_config = ConfigDict(populate_by_name=True)

    from_step: str | None = Field(default=None, alias="from", pattern=STEP_ID_PATTERN)
    patch_file: str | None = None
    patch: str | None = None
    target: ApplyTarget = "worktree"

    @model_validator(mode="after")
    def _one_source(self) -> ApplyDiffStep:
        if self.from_step and (self.patch is not None or self.patch_file):
            raise ValueError("give `from` or `patch_file`, not both")
        return self

    def referenced_steps(self) -> set[str]:
        """Earlier steps this one reads: its ``from`` step."""
        return super().referenced_steps() | ({self.from_step} if self.from_step else set())


class Env(BaseModel):
    """The v1 ``env`` block; keys besides the known ones become step environment variables."""

    model_config = ConfigDict(extra="allow", frozen=True)

    max_runtime_seconds: PositiveInt | None = None
    artifacts_dir: str | None = None
    seed: int | None = None
    max_cost_usd: PositiveFloat | None = None
    """The most the whole run may spend on model calls; the gate denies the next step after."""

    def variables(self) -> dict[str, str]:
        """The free keys, as environment variables for steps."""
        extra = self.model_extra or {}
        return {k: env_text(v) for k, v in extra.items()}

    def labels(self) -> dict[str, str]:
        """Cost labels: the free keys ``team`` and ``project``, when set."""
        extra = self.model_extra or {}
        return {k: env_text(extra[k]) for k in COST_LABELS if extra.get(k) not in (None, "")}

    @model_validator(mode="after")
    def _free_keys_are_scalars(self) -> Env:
        for key, value in (self.model_extra or {}).items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"env key {key!r} is not a valid environment variable name")
            if isinstance(value, dict | list):
                raise ValueError(f"env.{key} must be a string, number or boolean")
        return self


def env_text(value: Any) -> str:
    """How an ``env:`` value reads as an environment variable (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class WorkflowHead(Model):
    """The top-level keys of a workflow besides ``steps``."""

    version: Literal[1]
    workflow: str = Field(min_length=1)
    model: str | None = None
    guardrails: tuple[str, ...] = ()
    env: Env = Env()


class Workflow(WorkflowHead):
    """A whole v1 workflow, its steps validated by their step types' models."""

    steps: tuple[SerializeAsAny[Step], ...] = Field(min_length=1)

    def step(self, step_id: str) -> Step:
        """The step with this id; KeyError when there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy that validates back to an equal workflow (stored with the run)."""
        return self.model_dump(mode="json", exclude_unset=True)
