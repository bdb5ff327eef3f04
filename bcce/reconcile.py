"""Finding runs whose next message is gone, and putting them back on their way.

A live run always has a message somewhere: the gate's or the step's, in its queue's Redis
list, or delivered to a worker and held in kombu's ``unacked`` hash until acked (a worker
that dies leaves it there, and the broker hands it back after the visibility timeout).
A run with neither, and no news for ``bound`` seconds, is an orphan: a message was lost
(a Redis without persistence restarted, a broker bug, someone deleted it). ``reconcile``
finds them and re-enqueues the chain from the step the run was at, or fails the run with
the reason, and records either in the run's history.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus
from bcce.state import RunStore, broker_queue_keys, events_key

UNACKED = "unacked"
"""kombu's Redis transport: delivered, not yet acked messages (delivery tag -> message)."""


@dataclass(frozen=True)
class Orphan:
    """A run whose step has no message left anywhere."""

    run_id: str
    step_id: str
    quiet_seconds: float
    action: str = ""
    """What was done: ``requeued``, ``failed`` or ``""`` (a dry run)."""


def pending(client: Any, queues: Iterable[str]) -> set[tuple[str, str]]:
    """(run id, step id) of every bcce message queued or delivered and not yet acked."""
    found: set[tuple[str, str]] = set()
    raw: list[str] = []
    for queue in queues:
        for key in broker_queue_keys(queue):
            raw.extend(client.lrange(key, 0, -1))
    for value in client.hvals(UNACKED):
        try:
            raw.append(json.dumps(json.loads(value)[0]))
        except (ValueError, IndexError, TypeError):
            continue
    for message in raw:
        ids = _ids(message)
        if ids is not None:
            found.add(ids)
    return found


def _ids(message: str) -> tuple[str, str] | None:
    """The (run id, step id) a bcce task message is for, from its headers."""
    try:
        headers = json.loads(message).get("headers") or {}
        task = str(headers.get("task", ""))
        if not task.startswith("bcce."):
            return None
        body = json.loads(message).get("body")
        args = json.loads(base64.b64decode(body))[0]
        return str(args[0]), str(args[1])
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None


def at_step(run: RunRecord, steps: list[StepRecord]) -> str | None:
    """The step a live run is at: the one allowed, running or retrying, else the first not
    finished after the last that finished."""
    for step in steps:
        if step.status in (StepStatus.ALLOWED, StepStatus.RUNNING, StepStatus.RETRYING):
            return step.id
    for step in steps:
        if step.status == StepStatus.PENDING:
            return step.id
    return None


def quiet_for(store: RunStore, run: RunRecord, now: float) -> float:
    """Seconds since the run's last event (its creation when it has none)."""
    newest = store.client.xrevrange(events_key(run.id), count=1)
    last = int(str(newest[0][0]).split("-")[0]) / 1000 if newest else run.created_at
    return max(0.0, now - last)


def find(store: RunStore, queues: Iterable[str], bound: float) -> list[Orphan]:
    """Live runs quiet for longer than bound with no message queued or held for them."""
    now = time.time()
    live = [
        r
        for r in store.list_runs(limit=10_000)
        if r.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    ]
    if not live:
        return []
    messages = pending(store.client, queues)
    orphans = []
    for run in live:
        quiet = quiet_for(store, run, now)
        if quiet < bound:
            continue
        steps = store.steps(run.id)
        step_id = at_step(run, steps)
        if step_id is None or (run.id, step_id) in messages:
            continue
        orphans.append(Orphan(run.id, step_id, quiet))
    return orphans


def repair(app: Any, store: RunStore, orphan: Orphan, action: str) -> Orphan:
    """Re-enqueue the orphan's chain from its step (``requeue``) or fail its run (``fail``);
    either is recorded in the run's history."""
    from bcce import policy
    from bcce.compiler import compile_plan, to_chain
    from bcce.loader import from_snapshot

    reason = (
        f"step {orphan.step_id} had no message queued or held by a worker for "
        f"{orphan.quiet_seconds:.0f}s (lost by the broker)"
    )
    if action == "fail":
        store.finish(orphan.run_id, RunStatus.FAILED, f"{reason}; failed by the reconciler")
        return Orphan(orphan.run_id, orphan.step_id, orphan.quiet_seconds, "failed")
    workflow = from_snapshot(store.snapshot(orphan.run_id), app.step_types)
    plan = compile_plan(
        workflow,
        app.step_types,
        policy.Limits.of(app.bcce_settings),
        orphan.run_id,
        start_at=orphan.step_id,
    )

    def back_to_pending(step: StepRecord) -> StepRecord | None:
        if step.status == StepStatus.SUCCEEDED:
            return None
        return step.model_copy(update={"status": StepStatus.PENDING, "grant": None})

    store.update_step(
        orphan.run_id,
        orphan.step_id,
        back_to_pending,
        {"type": "run.reconciled", "step": orphan.step_id, "action": "requeued", "reason": reason},
    )
    to_chain(plan, app).apply_async()
    return Orphan(orphan.run_id, orphan.step_id, orphan.quiet_seconds, "requeued")
