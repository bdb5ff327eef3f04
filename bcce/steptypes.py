"""Step types: what each ``type:`` means, which pool runs it, and the executor contract.

Step types, artifact stores and event sinks are found through entry points, built-ins
included (see pyproject.toml), so a plugin package is registered exactly like ``cmd``:

.. code-block:: toml

    [project.entry-points."bcce.step_types"]
    echo = "bcce_echo:STEP_TYPE"

The entry point names a :class:`StepType` in a light module; its ``executor`` is a
``module:function`` path that only worker processes import.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol

from bcce.errors import UsageError
from bcce.policy import Effective
from bcce.records import Origin
from bcce.workflow import AgentStep, ApplyDiffStep, CmdStep, PromptStep, Step

STEP_TYPES_GROUP = "bcce.step_types"
ARTIFACT_STORES_GROUP = "bcce.artifact_stores"
EVENT_SINKS_GROUP = "bcce.event_sinks"

POLICY_QUEUE = "policy"
POLICY_TASK = "bcce.policy.check"


@dataclass(frozen=True)
class StepContext:
    """Everything an executor may use; built by the worker task for one attempt of one step."""

    run_id: str
    step: Step
    attempt: int
    timeout_seconds: float
    workspace: Path
    step_dir: Path
    env: Mapping[str, str]
    output_cap_bytes: int
    read_output: Callable[[str], str]
    """Text of an earlier step's ``output.txt``, by step id."""
    output_path: Callable[[str], Path]
    """Path of an earlier step's ``output.txt``, by step id."""
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set when the run ends (cancelled, deadline) while the step runs: stop promptly."""
    workflow_model: str | None = None
    """The workflow's ``model``, for steps that call one and set none of their own."""
    run_dir: Path | None = None
    """The run's artifact folder (earlier steps' artifacts are in its subfolders)."""
    origin: Origin | None = None
    """The repository the run started from, when its steps work in a copy of it."""
    workspace_root: Path | None = None
    """The top of that copy (``workspace`` may be a folder inside it)."""
    start_tree: str | None = None
    """The git tree of the workspace when this step started (isolated runs)."""
    approval: Mapping[str, Any] | None = None
    """apply_diff: the approval recorded for this step, if any."""
    approve_all: bool = False
    """The run was started with ``--approve-all``."""
    submitted_by: str | None = None
    """Who submitted the run (apply_diff: the org policy may forbid self-approval)."""
    policy: Effective | None = None
    """The effective policy the gate signed for this step (org rules included)."""
    resources: Mapping[str, int] = field(default_factory=dict)
    """Resource limits for the step's commands: cpu_seconds, memory_mb, file_size_mb,
    open_files, processes (the tighter of the worker's settings and the step's policy)."""


@dataclass(frozen=True)
class StepOutcome:
    """What an executor reports; artifacts are already written under ``step_dir``."""

    ok: bool
    exit_code: int | None = None
    error: str | None = None
    timed_out: bool = False
    cancelled: bool = False
    """Stopped because ``ctx.cancel`` was set."""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    awaiting_approval: Mapping[str, Any] | None = None
    """apply_diff: the step stopped for a person to approve this (sha256, files, lines)."""


class Executor(Protocol):
    """Runs one attempt of a step. Raise only for bugs; report failures in the outcome."""

    def __call__(self, ctx: StepContext) -> StepOutcome: ...


@dataclass(frozen=True)
class StepType:
    """A step type: its ``type:`` name, pool queue, parameter model and executor path."""

    name: str
    queue: str
    model: type[Step]
    executor: str | None
    """``module:function`` implementing :class:`Executor`; None while a type can only validate."""
    description: str = ""
    long_running: bool = True
    """Long steps get prefetch 1, so queue depth is a true autoscaling signal."""

    @property
    def task_name(self) -> str:
        """The Celery task name operators see in Flower."""
        return f"bcce.step.{self.name}"

    def load_executor(self) -> Executor:
        """Import the executor; done by workers only."""
        if self.executor is None:
            raise UsageError(f"step type {self.name!r} has no executor in this version of bcce")
        module, _, attr = self.executor.partition(":")
        fn: Executor = getattr(importlib.import_module(module), attr)
        return fn


CMD = StepType(
    "cmd", "command", CmdStep, "workers.executors.cmd:execute", "an allow-listed command, sandboxed"
)
PROMPT = StepType(
    "prompt", "agent", PromptStep, "workers.executors.prompt:execute", "one Bedrock model call"
)
AGENT = StepType(
    "agent",
    "agent",
    AgentStep,
    "workers.executors.agent:execute",
    "Claude Code headless on Bedrock",
)
APPLY_DIFF = StepType(
    "apply_diff",
    "diff",
    ApplyDiffStep,
    "workers.executors.apply_diff:execute",
    "apply a git diff behind an approval gate",
    long_running=False,
)
BUILTIN_QUEUES = (POLICY_QUEUE, "agent", "command", "diff")


@dataclass(frozen=True)
class Found:
    """One entry point found in a group, for ``bcce plugin list``."""

    group: str
    name: str
    value: str
    package: str
    version: str


def found(group: str) -> list[Found]:
    """Entry points of a group, with the distribution that provides each."""
    return [
        Found(group, ep.name, ep.value, *_dist(ep))
        for ep in sorted(entry_points(group=group), key=lambda e: e.name)
    ]


def _dist(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.name, dist.version) if dist is not None else ("?", "?")


@functools.cache
def registry() -> Mapping[str, StepType]:
    """All step types by name: the built-ins plus every installed plugin."""
    types: dict[str, StepType] = {}
    for ep in entry_points(group=STEP_TYPES_GROUP):
        package = _dist(ep)[0]
        try:
            obj = ep.load()
        except Exception as exc:
            raise UsageError(
                f"step type plugin {ep.name!r} from {package} failed to load: {exc}"
            ) from exc
        if not isinstance(obj, StepType) or obj.name != ep.name:
            raise UsageError(
                f"entry point {ep.name!r} of {package} is not a StepType named {ep.name!r}"
            )
        if ep.name in types and types[ep.name] != obj:
            raise UsageError(f"step type {ep.name!r} is registered twice (again by {package})")
        types[ep.name] = obj
    return types


def lookup(name: str, types: Mapping[str, StepType]) -> StepType:
    """The step type called name, or a usage error with a suggestion."""
    try:
        return types[name]
    except KeyError:
        raise UsageError(unknown_type_message(name, types)) from None


def unknown_type_message(name: str, types: Mapping[str, StepType]) -> str:
    """'unknown step type 'comand' (did you mean 'cmd'?); known: …'."""
    hint = did_you_mean(name, types)
    return f"unknown step type {name!r}{hint}; known types: {', '.join(sorted(types))}"


def did_you_mean(word: str, choices: Any) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def queues(types: Mapping[str, StepType]) -> list[str]:
    """Every queue a deployment may route to: policy, the built-in pools and plugin pools."""
    names = list(BUILTIN_QUEUES)
    names += sorted({t.queue for t in types.values()} - set(names))
    return names
