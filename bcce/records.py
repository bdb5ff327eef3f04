"""Run and step records: the statuses a run moves through and what is kept of each step."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from bcce.errors import ExitCode


class RunStatus(StrEnum):
    """Where a run is; terminal statuses map to exit codes."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        """True once nothing more will happen to the run without a person acting."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of ``bcce workflow run --wait`` for a run ending in this status."""
        return _EXIT[self]


_EXIT = {
    RunStatus.QUEUED: ExitCode.INFRASTRUCTURE,
    RunStatus.RUNNING: ExitCode.INFRASTRUCTURE,
    RunStatus.SUCCEEDED: ExitCode.OK,
    RunStatus.FAILED: ExitCode.STEP_FAILED,
    RunStatus.DENIED: ExitCode.DENIED,
    RunStatus.AWAITING_APPROVAL: ExitCode.AWAITING_APPROVAL,
    RunStatus.REJECTED: ExitCode.AWAITING_APPROVAL,
    RunStatus.CANCELLED: ExitCode.CANCELLED,
    RunStatus.BUDGET_EXCEEDED: ExitCode.BUDGET_EXCEEDED,
    RunStatus.TIMED_OUT: ExitCode.INFRASTRUCTURE,
}


class StepStatus(StrEnum):
    """Where a step is."""

    PENDING = "pending"
    ALLOWED = "allowed"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    DENIED = "denied"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"


class Record(BaseModel):
    """Base of stored records: tolerant of fields added by newer versions."""

    model_config = ConfigDict(extra="ignore")


class StepRecord(Record):
    """What is known of one step of a run."""

    id: str
    type: str
    queue: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_seconds: float | None = None
    worker: str | None = None
    error: str | None = None
    continued: bool = False
    """Failed, and the run went on because of ``on_error: continue``."""
    decision: dict[str, Any] | None = None
    decided_at: float | None = None
    grant: dict[str, Any] | None = None
    """The gate's signed grant (see ``bcce.gate``); steps run only on a valid one."""
    redeliveries: int = 0
    """Deliveries that found the step already done and did nothing."""
    artifacts: dict[str, str] = {}
    """Artifact name -> where it is (a path, or a URL for remote stores)."""
    model: str | None = None
    """The model id an agent or prompt step called, as configured (after substitution)."""
    usage: dict[str, int] = {}
    """Tokens of all attempts: input_tokens, output_tokens, cache_read_input_tokens, ..."""
    cost_usd: float = 0.0
    """What all attempts of the step cost (Claude Code's own figure, else the price table)."""
    tree: str | None = None
    """The git tree of the run's workspace after the step (isolated runs)."""
    approval: dict[str, Any] | None = None
    """apply_diff: the diff awaiting approval (sha256, files, lines) and, once given, who
    approved it (approved_by, approved_at, comment) or rejected it."""


ACTIVE_STEP = (StepStatus.ALLOWED, StepStatus.RUNNING, StepStatus.RETRYING)


def current_step(steps: list[StepRecord]) -> str | None:
    """The step a run is at: the one allowed, running or waiting to retry."""
    return next((s.id for s in steps if s.status in ACTIVE_STEP), None)


class Origin(Record):
    """Where a run's workspace came from, so any host can rebuild it (a git repository)."""

    repo: str
    """The repository's top folder on the submitting host."""
    subdir: str = ""
    """The workspace inside the repository ('' for its top)."""
    base_commit: str | None
    """HEAD when the run was submitted (None in a repository with no commit yet)."""
    start_tree: str
    """The working tree at submission (HEAD plus uncommitted and untracked files)."""
    remote_url: str | None = None
    """The ``origin`` remote, for hosts that cannot see ``repo``."""


class RunRecord(Record):
    """What is known of one run, without its steps."""

    id: str
    workflow: str
    status: RunStatus
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    workspace: str
    run_dir: str
    step_ids: list[str]
    error: str | None = None
    resumed_at: float | None = None
    """When the run was last resumed; its deadline counts from here."""
    resumes: int = 0
    cost_usd: float = 0.0
    """Spent so far by the run's steps, in USD."""
    labels: dict[str, str] = {}
    """Cost labels from the workflow's env: ``team``, ``project``."""
    origin: Origin | None = None
    """The git workspace the run's steps work on in a copy of their own (None: in place)."""
    artifacts_url: str | None = None
    """The run's remote artifact store (``s3://bucket/prefix/<run_id>``); None: run_dir."""
    approve_all: bool = False
    """``run --approve-all``: apply_diff steps apply without waiting for a person."""
    submitted_by: str | None = None
    ci: bool = False
    """Submitted from a CI job (``CI`` set): the org policy may require approvals then."""

    @property
    def clock_start(self) -> float:
        """Where ``env.max_runtime_seconds`` counts from: submission, or the last resume."""
        return self.resumed_at or self.created_at


def new_run_id(now: float | None = None) -> str:
    """A run id: UTC time plus six random hex digits, e.g. ``2026-11-26T14-03-07-a1b2c3``."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return f"{moment:%Y-%m-%dT%H-%M-%S}-{secrets.token_hex(3)}"
