"""Workflow -> Celery chain. Pure: the same workflow and run id give the same canvas.

For each step the chain holds two immutable signatures, referenced by task name only
(the CLI never imports executor code): ``bcce.policy.check`` on the ``policy`` queue,
then ``bcce.step.<type>`` on the step's pool queue. Both carry only ``(run_id, step_id)``;
workers read the workflow from the run's snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bcce import policy
from bcce.errors import UsageError
from bcce.steptypes import POLICY_QUEUE, POLICY_TASK, StepType
from bcce.workflow import Workflow

if TYPE_CHECKING:
    from celery import Celery
    from celery.canvas import Signature, _chain

    from bcce.orgpolicy import Rules


@dataclass(frozen=True)
class PlannedStep:
    """One step as it will be enqueued."""

    id: str
    type: str
    queue: str
    task: str
    runnable: bool
    effective: policy.Effective


@dataclass(frozen=True)
class Plan:
    """The compiled form of a run: its steps in order, from ``start_at`` on."""

    run_id: str
    workflow: str
    steps: tuple[PlannedStep, ...]

    @property
    def queues(self) -> list[str]:
        """Queues that need a live worker for this run, policy first."""
        return list(dict.fromkeys([POLICY_QUEUE, *(s.queue for s in self.steps)]))

    def messages(self) -> list[dict[str, Any]]:
        """The chain as plain dicts: task, args, queue — what goes on the wire."""
        out: list[dict[str, Any]] = []
        for step in self.steps:
            args = [self.run_id, step.id]
            out.append({"task": POLICY_TASK, "args": args, "queue": POLICY_QUEUE})
            out.append({"task": step.task, "args": args, "queue": step.queue})
        return out

    def require_runnable(self) -> None:
        """Fail with a usage error if a step's type can validate but not run."""
        not_runnable = [s.id for s in self.steps if not s.runnable]
        if not_runnable:
            raise UsageError(
                f"step(s) {', '.join(not_runnable)} use a step type this version of bcce can "
                "validate but not run yet: see `bcce plugin list`"
            )

    def to_json(self) -> dict[str, Any]:
        """The plan for ``--dry-run --json``."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "queues": self.queues,
            "steps": [
                {
                    "id": s.id,
                    "type": s.type,
                    "queue": s.queue,
                    "task": s.task,
                    "runnable": s.runnable,
                    "policy": s.effective.to_json(),
                }
                for s in self.steps
            ],
            "chain": self.messages(),
        }


def compile_plan(
    workflow: Workflow,
    types: Mapping[str, StepType],
    limits: policy.Limits,
    run_id: str,
    start_at: str | None = None,
    org: Rules | None = None,
) -> Plan:
    """Plan the run of workflow from step ``start_at`` (default: the first), showing each
    step's effective policy under the org's rules when given."""
    ids = [s.id for s in workflow.steps]
    if start_at is not None and start_at not in ids:
        raise UsageError(f"workflow has no step {start_at!r}; steps: {', '.join(ids)}")
    first = ids.index(start_at) if start_at else 0
    planned = []
    for step in workflow.steps[first:]:
        kind = types[step.type]
        planned.append(
            PlannedStep(
                id=step.id,
                type=kind.name,
                queue=kind.queue,
                task=kind.task_name,
                runnable=kind.executor is not None,
                effective=policy.effective(step, limits, org),
            )
        )
    return Plan(run_id=run_id, workflow=workflow.workflow, steps=tuple(planned))


def signatures(plan: Plan, app: Celery | None = None) -> list[Signature]:
    """The chain's signatures, immutable so no task result leaks into the next task's args."""
    from celery import signature

    return [
        signature(m["task"], args=tuple(m["args"]), queue=m["queue"], immutable=True, app=app)
        for m in plan.messages()
    ]


def to_chain(plan: Plan, app: Celery) -> _chain:
    """The Celery chain that runs the plan, bound to app (never Celery's default app)."""
    from celery import chain

    plan.require_runnable()
    return chain(*signatures(plan, app), app=app)
