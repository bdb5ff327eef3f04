"""Submitting a run and following it: what ``bcce workflow run`` does besides printing."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import redis

from bcce.artifacts import RUN_STATE, LocalArtifactStore, store_for, write_atomic
from bcce.celery_app import BcceCelery
from bcce.compiler import Plan, to_chain
from bcce.errors import InfrastructureError, NotFound, UsageError
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus, current_step
from bcce.settings import Settings
from bcce.state import Event, RunStore
from bcce.workflow import Workflow
from bcce.workspace import WorkspaceError, capture

T = TypeVar("T")


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


def check_workers(
    app: BcceCelery, needed: Iterable[str], timeout: float, unsure_ok: bool = False
) -> None:
    """Fail with exit 7 naming each pool that no live worker consumes.

    With unsure_ok, a broker that cannot be asked right now (a reconnect in progress) is no
    verdict: the check passes and is made again later.
    """
    try:
        answer = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # kombu raises transport-specific errors
        if unsure_ok:
            return
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
    *,
    isolate: bool = True,
    approve_all: bool = False,
    artifacts_url: str | None = None,
) -> RunRecord:
    """Record the run, mirror it to run-state.json and enqueue its chain.

    In a git repository (and with isolate) the workspace is recorded first (base commit and
    uncommitted changes): steps then work in a copy of it. If the chain cannot be published
    the record and the run's folder are removed again: no half-submitted run.
    """
    chain = to_chain(plan, app)
    types = app.step_types
    fresh_dir = not run_dir.exists()
    try:
        origin = capture(workspace, run_dir) if isolate else None
    except WorkspaceError as exc:
        if fresh_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise UsageError(
            f"cannot record the workspace {workspace}: {exc} (BCCE_ISOLATE=false runs the "
            "steps in the workspace itself)"
        ) from None
    run = RunRecord(
        id=plan.run_id,
        workflow=workflow.workflow,
        status=RunStatus.QUEUED,
        created_at=time.time(),
        workspace=str(workspace),
        run_dir=str(run_dir),
        step_ids=[s.id for s in workflow.steps],
        origin=origin,
        artifacts_url=f"{artifacts_url.rstrip('/')}/{plan.run_id}" if artifacts_url else None,
        approve_all=approve_all,
        submitted_by=identity(),
        ci=os.environ.get("CI", "").lower() not in ("", "0", "false"),
    )
    steps = [StepRecord(id=s.id, type=s.type, queue=types[s.type].queue) for s in workflow.steps]
    from bcce.identity import current

    details = {
        "by": run.submitted_by,
        "identity": current().to_json(),
        "workflow": workflow.workflow,
        "workflow_sha256": hashlib.sha256(
            json.dumps(workflow.snapshot(), sort_keys=True).encode()
        ).hexdigest(),
        "workspace": str(workspace),
        "base_commit": origin.base_commit if origin else None,
        "approve_all": approve_all,
    }
    try:
        store.create(run, workflow.snapshot(), steps, details)
    except Exception:
        if fresh_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        artifacts = store_for(run, app.bcce_settings)
        artifacts.push()  # workspace.patch
        artifacts.write_snapshot(workflow.snapshot())
        artifacts.mirror(run, steps, store.audit_lines(run.id))
        chain.apply_async()
    except Exception as exc:
        store.delete(run.id)
        if fresh_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise InfrastructureError(f"could not enqueue run {run.id}: {exc}") from None
    return run


def identity() -> str:
    """Who is acting (recorded on submit, approve, reject, cancel): the AWS caller ARN where
    credentials are at hand, else ``user@host`` (:mod:`bcce.identity`)."""
    from bcce.identity import current

    return current().principal


def follow(
    store: RunStore,
    run_id: str,
    on_event: Callable[[Event], None],
    *,
    poll_seconds: float,
    timeout: float | None = None,
    after: str = "0-0",
    stall_check: Callable[[], None] | None = None,
    stall_seconds: float = 30.0,
    reconnect_seconds: float = 60.0,
    each_poll: Callable[[], None] | None = None,
) -> RunRecord:
    """Feed the run's events to on_event until it ends; returns the final record.

    After ``stall_seconds`` without an event, and as often again, ``stall_check`` runs: it
    raises (exit 7) when no worker is left to move the run on, instead of waiting forever.
    A Redis that goes away (a restart, a failover) is waited for up to ``reconnect_seconds``.
    ``each_poll`` runs once a poll (embedded runs check for a cancel request there).
    """
    block_ms = int(poll_seconds * 1000)
    deadline = None if timeout is None else time.monotonic() + timeout
    quiet_since = time.monotonic()
    last = after
    patient = _Patience(run_id, reconnect_seconds)
    while True:
        if each_poll is not None:
            each_poll()
        events = patient.call(functools.partial(store.events, run_id, last, block_ms))
        for entry_id, event in events:
            last = entry_id
            on_event(event)
            if event.get("type") == "run.finished":
                return patient.call(lambda: store.run(run_id))
        if events:
            quiet_since = time.monotonic()
        else:
            run = patient.call(lambda: store.run(run_id))
            if run.status.terminal:
                return run
            if stall_check is not None and time.monotonic() - quiet_since > stall_seconds:
                stall_check()
                quiet_since = time.monotonic()
        if deadline is not None and time.monotonic() > deadline:
            raise InfrastructureError(
                f"gave up waiting for run {run_id} after {timeout:g}s; it goes on: "
                f"`bcce workflow status {run_id}`"
            )


class _Patience:
    """Retries a Redis read while the server is away, for a bounded time, then says so."""

    def __init__(self, run_id: str, seconds: float) -> None:
        self.run_id = run_id
        self.seconds = seconds
        self.lost = False

    def call(self, read: Callable[[], T]) -> T:
        gone_since: float | None = None
        while True:
            try:
                value = read()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                gone_since = gone_since or time.monotonic()
                self.lost = True
                if time.monotonic() - gone_since > self.seconds:
                    raise InfrastructureError(
                        f"Redis did not answer for {self.seconds:g}s while following run "
                        f"{self.run_id} ({exc}); the run may go on: "
                        f"`bcce workflow status {self.run_id}` once Redis is back"
                    ) from None
                time.sleep(min(1.0, self.seconds / 10))
                continue
            except NotFound:
                if self.lost:
                    raise InfrastructureError(
                        f"run {self.run_id} is gone from Redis after it came back: it restarted "
                        "without persistence; the run's artifacts and run-state.json remain"
                    ) from None
                raise
            return value


def resubmit(
    app: BcceCelery,
    store: RunStore,
    workflow: Workflow,
    plan: Plan,
    steps: list[StepRecord],
) -> RunRecord:
    """Continue an ended run from ``plan``'s first step: reset those steps, enqueue again.

    Earlier steps and their artifacts stay as they are; attempts keep counting.
    """
    chain = to_chain(plan, app)
    first = plan.steps[0].id
    start = [s.id for s in steps].index(first)
    fresh = [
        s.model_copy(
            update={
                "status": StepStatus.PENDING,
                "decision": None,
                "error": None,
                "exit_code": None,
                "finished_at": None,
                "duration_seconds": None,
                "continued": False,
                "tree": None,
            }
        )
        for s in steps[start:]
    ]
    now = time.time()

    def reopen(run: RunRecord) -> RunRecord | None:
        if not run.status.terminal or run.status == RunStatus.SUCCEEDED:
            return None
        return run.model_copy(
            update={
                "status": RunStatus.QUEUED,
                "finished_at": None,
                "error": None,
                "resumed_at": now,
                "resumes": run.resumes + 1,
            }
        )

    run = store.reopen(plan.run_id, reopen, fresh, {"type": "run.resumed", "step": first})
    if run is None:
        raise UsageError(f"run {plan.run_id} changed while resuming it: try again")
    try:
        chain.apply_async()
    except Exception as exc:
        store.finish(run.id, RunStatus.FAILED, f"resume could not enqueue: {exc}")
        raise InfrastructureError(f"could not enqueue run {run.id}: {exc}") from None
    return run


def resume_point(run: RunRecord, steps: list[StepRecord], start_at: str | None) -> str:
    """The step a resume starts from: start_at, else the first step that did not succeed."""
    if run.status == RunStatus.SUCCEEDED:
        raise UsageError(f"run {run.id} succeeded: there is nothing to resume")
    if not run.status.terminal:
        raise UsageError(
            f"run {run.id} is still {run.status.value}: wait for it, or "
            f"`bcce workflow cancel {run.id}` first"
        )
    if start_at is not None:
        if start_at not in run.step_ids:
            raise UsageError(
                f"run {run.id} has no step {start_at!r}; steps: {', '.join(run.step_ids)}"
            )
        return start_at
    for step in steps:
        if step.status != StepStatus.SUCCEEDED and not step.continued:
            return step.id
    return steps[-1].id


CANCEL_REQUEST = "cancel-request.json"
"""In an embedded run's folder: another process asks the one running it to cancel it."""


def request_cancel(settings: Settings, run_id: str, who: str, reason: str | None) -> RunRecord:
    """Ask the process running an embedded run to cancel it (it checks once a poll)."""
    run, _ = load_run(settings, run_id)
    if run.status.terminal:
        raise UsageError(f"run {run_id} already ended ({run.status.value}): nothing to cancel")
    path = Path(run.run_dir) / CANCEL_REQUEST
    write_atomic(path, json.dumps({"by": who, "reason": reason, "at": time.time()}) + "\n")
    return run


def cancel_requested(store: RunStore, settings: Settings, run_id: str, run_dir: Path) -> None:
    """Cancel the run if another process asked for it (see :func:`request_cancel`)."""
    path = run_dir / CANCEL_REQUEST
    if not path.is_file():
        return
    try:
        asked = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        asked = {}
    path.unlink(missing_ok=True)
    who = str(asked.get("by") or "another process")
    with contextlib.suppress(UsageError):  # it ended meanwhile
        cancel(store, settings, run_id, who, asked.get("reason"))


def cancel(
    store: RunStore, settings: Settings, run_id: str, who: str, reason: str | None
) -> RunRecord:
    """End a live run as cancelled; its gate denies what follows, workers stop its step."""
    text = f"cancelled by {who}" + (f": {reason}" if reason else "")
    if not store.finish(run_id, RunStatus.CANCELLED, text):
        run = store.run(run_id)
        raise UsageError(f"run {run_id} already ended ({run.status.value}): nothing to cancel")
    run, steps = store.run_with_steps(run_id)
    if Path(run.run_dir).is_dir():  # same host or shared volume; workers refresh it too
        store_for(run, settings).mirror(run, steps, store.audit_lines(run_id))
    return run


def load_run(settings: Settings, run_id: str) -> tuple[RunRecord, list[StepRecord]]:
    """A run and its steps: from the run store, or in embedded mode from run-state.json."""
    if not settings.embedded:
        store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
        store.ping(settings.effective_state_url)
        return store.run_with_steps(run_id)
    local = LocalArtifactStore(settings.runs_dir / run_id)
    if "/" in run_id or run_id in (".", "..") or not (local.run_dir / RUN_STATE).is_file():
        raise NotFound(
            f"no run {run_id!r} in {settings.runs_dir}/ (embedded runs are kept only on disk; "
            "pass --broker for a distributed run)"
        )
    return local.read_state()


def runs_on_disk(settings: Settings, limit: int, wanted: RunStatus | None) -> list[RunRecord]:
    """Embedded runs found under the runs folder, newest first."""
    runs = []
    for path in sorted(settings.runs_dir.glob(f"*/{RUN_STATE}"), reverse=True):
        run, _ = LocalArtifactStore(path.parent).read_state()
        if wanted is None or run.status == wanted:
            runs.append(run)
        if len(runs) >= limit:
            break
    return runs


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
        "cost_usd": round(run.cost_usd, 6),
        "labels": run.labels,
        "duration_seconds": (
            round(run.finished_at - run.created_at, 3) if run.finished_at else None
        ),
        "steps": [s.model_dump(mode="json") for s in steps],
    }
