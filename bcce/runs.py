"""Submitting a run and following it: what ``bcce workflow run`` does besides printing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bcce.artifacts import LocalArtifactStore
from bcce.celery_app import BcceCelery
from bcce.compiler import Plan, to_chain
from bcce.errors import InfrastructureError, UsageError
from bcce.records import RunRecord, RunStatus, StepRecord, current_step
from bcce.settings import Settings
from bcce.state import Event, RunStore
from bcce.workflow import Workflow


def run_dir_for(workflow: Workflow, settings: Settings, workspace: Path, run_id: str) -> Path:
    """Where a run's artifacts go: ``env.artifacts_dir``, else ``<runs_dir>/<run_id>``.

    A workflow may only choose a folder inside its workspace; the operator's
    ``BCCE_RUNS_DIR`` may be anywhere.
    """
    chosen = workflow.env.artifacts_dir
    if not chosen:
        path = settings.runs_dir / run_id
        return (path if path.is_absolute() else workspace / path).resolve()
    path = (workspace / chosen).resolve()
    if not path.is_relative_to(workspace.resolve()) or path == workspace.resolve():
        raise UsageError(
            f"env.artifacts_dir {chosen!r} must be a folder inside the workspace "
            f"{workspace}: use a relative path such as .bcce_runs/${{RUN_ID}}"
        )
    return path


def check_workers(app: BcceCelery, needed: Iterable[str], timeout: float) -> None:
    """Fail with exit 7 naming each pool that no live worker consumes."""
    try:
        answer = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # kombu raises transport-specific errors
        raise InfrastructureError(f"cannot ask workers over the broker: {exc}") from None
    consumed = {q.get("name") for queues in answer.values() for q in queues or ()}
    missing = [q for q in needed if q not in consumed]
    if missing:
        pools = " ".join(f"--pool {q}" for q in missing)
        raise InfrastructureError(
            f"no live worker consumes {', '.join(repr(q) for q in missing)} "
            f"(asked for {timeout:g}s): start one with `bcce worker {pools}`, "
            "or pass --no-worker-check to enqueue anyway"
        )


def submit(
    app: BcceCelery,
    store: RunStore,
    workflow: Workflow,
    plan: Plan,
    workspace: Path,
    run_dir: Path,
) -> RunRecord:
    """Record the run, mirror it to run-state.json and enqueue its chain.

    If the chain cannot be published the record is removed again: no half-submitted run.
    """
    chain = to_chain(plan, app)
    types = app.step_types
    run = RunRecord(
        id=plan.run_id,
        workflow=workflow.workflow,
        status=RunStatus.QUEUED,
        created_at=time.time(),
        workspace=str(workspace),
        run_dir=str(run_dir),
        step_ids=[s.id for s in workflow.steps],
    )
    steps = [StepRecord(id=s.id, type=s.type, queue=types[s.type].queue) for s in workflow.steps]
    store.create(run, workflow.snapshot(), steps)
    try:
        LocalArtifactStore(run_dir).mirror(run, steps)
        chain.apply_async()
    except Exception as exc:
        store.delete(run.id)
        raise InfrastructureError(f"could not enqueue run {run.id}: {exc}") from None
    return run


def follow(
    store: RunStore,
    run_id: str,
    on_event: Callable[[Event], None],
    *,
    poll_seconds: float,
    timeout: float | None = None,
) -> RunRecord:
    """Feed the run's events to on_event until it ends; returns the final record."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = "0-0"
    while True:
        events = store.events(run_id, after=last, block_ms=int(poll_seconds * 1000))
        for entry_id, event in events:
            last = entry_id
            on_event(event)
            if event.get("type") == "run.finished":
                return store.run(run_id)
        if not events:
            run = store.run(run_id)
            if run.status.terminal:
                return run
        if deadline is not None and time.monotonic() > deadline:
            raise InfrastructureError(
                f"gave up waiting for run {run_id} after {timeout:g}s; it goes on: "
                f"`bcce workflow status {run_id}`"
            )


def summary(run: RunRecord, steps: list[StepRecord]) -> dict[str, Any]:
    """The machine-readable form of a run and its steps (``--json``, run-state.json)."""
    return {
        "run_id": run.id,
        "workflow": run.workflow,
        "status": run.status.value,
        "exit_code": int(run.status.exit_code) if run.status.terminal else None,
        "error": run.error,
        "run_dir": run.run_dir,
        "current_step": current_step(steps),
        "duration_seconds": (
            round(run.finished_at - run.created_at, 3) if run.finished_at else None
        ),
        "steps": [s.model_dump(mode="json") for s in steps],
    }
