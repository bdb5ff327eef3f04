"""The Celery tasks: thin — load the run, check, call the executor, record.

``bcce.policy.check`` gates every step; ``bcce.step.<type>`` runs one. Both take
``(run_id, step_id)`` only. Raising :class:`StepDenied` or :class:`StepFailed` stops the
chain (and shows as a failure in Flower); returning lets the next signature run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import Retry

from bcce import clones, orgpolicy, policy, pricing
from bcce.artifacts import METRICS, OUTPUT, POLICY, STDERR, STDOUT
from bcce.celery_app import BcceCelery
from bcce.gate import GrantRefused
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus
from bcce.redact import Redactor, secret_values
from bcce.steptypes import POLICY_TASK, StepContext, StepOutcome
from bcce.workflow import Step, Workflow
from bcce.workspace import WorkspaceError
from workers import metrics
from workers.runtime import Runtime, executor, resources, runtime, step_env

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 30


class StepDenied(Exception):
    """Raised when the gate (or a step's own check) refuses a step; stops the chain."""


class StepFailed(Exception):
    """Raised when a step failed and the run stops; stops the chain."""


class StepCancelled(Exception):
    """Raised when a step was stopped because its run ended meanwhile; stops the chain."""


class StepAwaitingApproval(Exception):
    """Raised when an apply_diff step stops for a person's approval; stops the chain."""


def register(app: BcceCelery) -> None:
    """Register the gate and one step task per step type on app."""

    # Bound to this app explicitly: task.app may resolve to Celery's default app.
    def policy_check(task: Task, run_id: str, step_id: str) -> dict[str, Any]:
        with _fail_run_on_crash(app, task, run_id, step_id):
            return check(app, run_id, step_id)

    def step(task: Task, run_id: str, step_id: str) -> dict[str, Any]:
        with _fail_run_on_crash(app, task, run_id, step_id):
            return run_step(app, task, run_id, step_id)

    # The run store is where outcomes live; Celery's result backend would only repeat them
    # (two more Redis writes per task). Flower follows tasks through events, not results.
    options: dict[str, Any] = {"bind": True, "shared": False, "ignore_result": True}
    app.task(name=POLICY_TASK, throws=(StepDenied,), **options)(policy_check)
    for kind in app.step_types.values():
        app.task(
            name=kind.task_name,
            max_retries=None,
            throws=(StepDenied, StepFailed, StepCancelled, StepAwaitingApproval),
            **options,
        )(step)


@contextmanager
def _fail_run_on_crash(app: BcceCelery, task: Task, run_id: str, step_id: str) -> Iterator[None]:
    """A task that crashes (a bug, a plugin missing on this worker) ends its run as failed.

    Otherwise the chain stops silently and the run waits forever. The exception still
    propagates, so Celery and Flower show it with its traceback.
    """
    try:
        yield
    except (StepDenied, StepFailed, StepCancelled, StepAwaitingApproval, Retry):
        raise
    except Exception as exc:
        reason = f"{task.name} crashed on {task.request.hostname}: {type(exc).__name__}: {exc}"
        try:
            _finish(runtime(app), run_id, RunStatus.FAILED, f"step {step_id}: {reason}")
        except Exception:
            log.exception("run %s step %s: could not record the crash", run_id, step_id)
        raise


def check(app: BcceCelery, run_id: str, step_id: str) -> dict[str, Any]:
    """Decide whether the step may run, record the decision, stop the chain on a denial."""
    rt = runtime(app)
    run, record = rt.store.step_of_run(run_id, step_id)
    workflow = rt.workflow(run_id)
    step = workflow.step(step_id)
    decision = _decide(rt, run, workflow, step)
    grant = None
    if decision.allowed:
        try:
            grant = rt.keys.sign(decision, run_id, step, time.time(), rt.grant_ttl_seconds)
        except GrantRefused as exc:  # fail closed: no key, no grant
            decision = policy.Decision(False, "gate_key", str(exc), decision.timeout_seconds)
    status = StepStatus.ALLOWED if decision.allowed else StepStatus.DENIED
    if record.status == StepStatus.SUCCEEDED:
        status = record.status  # a redelivered gate never un-does a finished step
    metrics.get().decisions.labels(decision.rule, "allow" if decision.allowed else "deny").inc()
    rt.store.put_step(
        run_id,
        record.model_copy(
            update={
                "decision": decision.to_json(),
                "grant": grant,
                "status": status,
                "decided_at": time.time(),
            }
        ),
        {
            "type": "step.allowed" if decision.allowed else "step.denied",
            "step": step_id,
            "rule": decision.rule,
            "reason": decision.reason,
        },
    )
    if run.status == RunStatus.QUEUED:
        rt.store.update_run(run_id, _started, {"type": "run.started"})
    if decision.allowed:
        return {"run_id": run_id, "step_id": step_id, "allowed": True}
    log.info("run %s step %s denied by %s: %s", run_id, step_id, decision.rule, decision.reason)
    denied = rt.artifacts(run)
    denied.write_json(step_id, POLICY, decision.to_json())
    denied.push(step_id)
    if run.status.terminal:
        rt.mirror(run_id)  # ended elsewhere (cancel): refresh the file copy where steps run
    else:
        ended = _DENIAL_ENDS.get(decision.rule, RunStatus.DENIED)
        _finish(rt, run_id, ended, f"step {step_id} denied: {decision.reason}")
    raise StepDenied(f"{run_id} {step_id}: {decision.reason}")


def _decide(rt: Runtime, run: RunRecord, workflow: Workflow, step: Step) -> policy.Decision:
    """The gate's decision; fail closed: an org policy that cannot be used, or a rule that
    breaks, denies."""
    timeout = float(rt.limits.default_timeout_seconds)
    try:
        org = rt.org_rules(workflow)
    except orgpolicy.PolicyFileError as exc:
        return policy.Decision(False, "org_policy", str(exc), timeout)
    try:
        return policy.decide(
            workflow,
            step,
            rt.limits,
            run_active=not run.status.terminal,
            elapsed_seconds=time.time() - run.clock_start,
            spent_usd=run.cost_usd,
            org=org,
            ci=run.ci,
        )
    except Exception as exc:
        log.exception("run %s step %s: a policy rule failed", run.id, step.id)
        return policy.Decision(
            False, "policy_error", f"a policy rule failed: {type(exc).__name__}: {exc}", timeout
        )


# How a run ends when the gate denies a step by these rules (others: denied).
_DENIAL_ENDS = {"deadline": RunStatus.TIMED_OUT, "budget": RunStatus.BUDGET_EXCEEDED}


def _worker_name(task: Task) -> str:
    # Embedded workers run tasks on a thread named after their node; Celery's in-thread
    # tracer reports only the machine's hostname for them.
    thread = threading.current_thread().name
    return thread if "@" in thread else str(task.request.hostname or "")


def _execute(rt: Runtime, ctx: StepContext) -> StepOutcome:
    try:
        return executor(rt.types[ctx.step.type])(ctx)
    except Exception as exc:
        log.exception("run %s step %s: executor raised", ctx.run_id, ctx.step.id)
        return StepOutcome(ok=False, error=f"executor raised {type(exc).__name__}: {exc}")


def _started(run: RunRecord) -> RunRecord | None:
    if run.status != RunStatus.QUEUED:
        return None
    return run.model_copy(update={"status": RunStatus.RUNNING, "started_at": time.time()})


def _finish(rt: Runtime, run_id: str, status: RunStatus, error: str | None = None) -> None:
    # run-state.json is refreshed when the run ends (and on retries), not after every step.
    if rt.store.finish(run_id, status, error):
        metrics.get().runs.labels(status.value).inc()
        rt.mirror(run_id)


def run_step(app: BcceCelery, task: Task, run_id: str, step_id: str) -> dict[str, Any]:
    """Run one attempt of a step and record it; retry, continue or stop as on_error says."""
    rt = runtime(app)
    run, record = rt.store.step_of_run(run_id, step_id)
    workflow = rt.workflow(run_id)
    step = workflow.step(step_id)
    done = {"run_id": run_id, "step_id": step_id}
    if record.status == StepStatus.SUCCEEDED or record.continued:
        # A redelivery (worker lost after the step finished): never run a step twice.
        rt.store.put_step(
            run_id,
            record.model_copy(update={"redeliveries": record.redeliveries + 1}),
            {"type": "step.redelivered", "step": step_id},
        )
        log.warning("run %s step %s already finished; redelivery ignored", run_id, step_id)
        return {**done, "status": record.status.value, "redelivered": True}
    if run.status.terminal:
        log.info("run %s step %s skipped: run is %s", run_id, step_id, run.status.value)
        task.request.chain = None
        return {**done, "status": "skipped"}
    try:
        # What runs is what the gate signed for: its timeout, this run, this step, this spec.
        decision = rt.keys.verify(record.grant, run_id, step, time.time())
    except GrantRefused as exc:
        log.warning("run %s step %s refused: %s", run_id, step_id, exc)
        rt.store.put_step(
            run_id,
            record.model_copy(update={"status": StepStatus.DENIED, "error": f"refused: {exc}"}),
            {"type": "step.refused", "step": step_id, "reason": str(exc)},
        )
        _finish(rt, run_id, RunStatus.DENIED, f"step {step_id} refused: {exc}")
        raise StepDenied(f"{run_id} {step_id}: {exc}") from None

    attempt = record.attempts + 1
    started = time.time()
    worker = _worker_name(task)
    record = record.model_copy(
        update={
            "status": StepStatus.RUNNING,
            "attempts": attempt,
            "started_at": started,
            "finished_at": None,
            "exit_code": None,
            "error": None,
            "worker": worker,
        }
    )
    rt.store.put_step(
        run_id,
        record,
        {"type": "step.started", "step": step_id, "attempt": attempt, "worker": worker},
    )
    log.info("run %s step %s attempt %d started on %s", run_id, step_id, attempt, worker)

    artifacts = rt.artifacts(run)
    artifacts.pull()  # a remote store: earlier steps' outputs and diffs, onto this host
    step_dir = artifacts.step_dir(step_id)
    # The gate recorded the decision in Redis; the file copy is written where the step runs.
    artifacts.write_json(step_id, POLICY, {**(record.decision or {}), "grant": record.grant})
    run_dir = artifacts.run_dir
    prepared: clones.Prepared | None = None
    workspace = Path(run.workspace)
    signed = policy.Effective.from_json(decision.effective) if decision.effective else None
    passed = signed.env_pass if signed else ()
    env = step_env(run, workflow, step_id, step_dir, dict(os.environ), passed)
    env["BCCE_RUN_DIR"] = str(run_dir)
    try:
        if run.origin is not None:
            steps = rt.store.steps(run_id)
            prepared = clones.prepare(run, steps, step_id, rt.workspace_cache, run_dir)
            workspace = prepared.path
            env["BCCE_WORKSPACE"] = str(workspace)
    except WorkspaceError as exc:
        outcome = StepOutcome(ok=False, error=f"cannot prepare the run's workspace: {exc}")
    else:
        with rt.cancel_watch.watching(run_id) as cancel:
            outcome = _execute(
                rt,
                StepContext(
                    run_id=run_id,
                    step=step,
                    attempt=attempt,
                    timeout_seconds=decision.timeout_seconds,
                    workspace=workspace,
                    step_dir=step_dir,
                    env=env,
                    output_cap_bytes=rt.output_cap_bytes,
                    read_output=lambda sid: (run_dir / sid / OUTPUT).read_text("utf-8"),
                    output_path=lambda sid: run_dir / sid / OUTPUT,
                    cancel=cancel,
                    workflow_model=workflow.model,
                    run_dir=run_dir,
                    origin=run.origin,
                    workspace_root=prepared.root if prepared else None,
                    start_tree=prepared.before if prepared else None,
                    approval=record.approval,
                    approve_all=run.approve_all,
                    submitted_by=run.submitted_by,
                    resources=resources(rt.resources, step),
                    policy=signed,
                ),
            )
    outcome = _redact(
        outcome, step_dir, Redactor(secret_values(dict(os.environ)) + secret_values(env))
    )
    if prepared is not None:
        try:
            record = record.model_copy(update={"tree": prepared.finish(step_dir)})
        except WorkspaceError as exc:
            outcome = replace(outcome, ok=False, error=f"cannot record the step's changes: {exc}")
    if outcome.awaiting_approval is not None:
        artifacts.push(step_id)
        _await_approval(rt, run_id, record, step_dir, outcome.awaiting_approval)
        raise StepAwaitingApproval(f"{run_id} {step_id}: awaiting approval")
    finished = time.time()
    duration = finished - started
    artifacts.write_json(
        step_id,
        METRICS,
        {
            "attempt": attempt,
            "duration_seconds": round(duration, 6),
            "worker": worker,
            "ok": outcome.ok,
            **outcome.metrics,
        },
    )
    artifacts.push(step_id)

    denials = outcome.metrics.get("denials") or []
    if denials:
        _record_denials(rt, run_id, step_id, denials)
    spend = _spend(record, outcome)
    run_spent = run.cost_usd
    if spend:
        record = record.model_copy(update=spend)
        run_spent = _charge(rt, run_id, workflow, step_id, outcome)
    run_cap = signed.run_max_cost_usd if signed else None
    step_cap = signed.max_cost_usd if signed else None
    over_budget = _over_step_budget(step, record, step_cap) or _over_run_budget(
        workflow, run_spent, run_cap
    )
    if over_budget and outcome.ok:
        outcome = replace(outcome, ok=False, error=over_budget)

    status = StepStatus.SUCCEEDED
    if outcome.cancelled:
        status = StepStatus.CANCELLED
    elif not outcome.ok:
        status = StepStatus.TIMED_OUT if outcome.timed_out else StepStatus.FAILED
    failed = not outcome.ok and not outcome.cancelled
    will_retry = failed and attempt < step.max_attempts and not over_budget
    continued = failed and not will_retry and step.on_error == "continue"
    rt.store.put_step(
        run_id,
        record.model_copy(
            update={
                "status": StepStatus.RETRYING if will_retry else status,
                "exit_code": outcome.exit_code,
                "finished_at": finished,
                "duration_seconds": duration,
                "error": outcome.error,
                "continued": continued,
                "artifacts": artifacts.listing(step_id),
            }
        ),
        {
            "type": "step.retrying" if will_retry else "step.finished",
            "step": step_id,
            "status": status.value,
            "exit_code": outcome.exit_code,
            "error": outcome.error,
            "duration_seconds": round(duration, 3),
            "attempt": attempt,
            "continued": continued,
            **_audited(outcome),
        },
    )
    kind = rt.types[step.type]
    recorded = metrics.get()
    recorded.steps.labels(kind.name, kind.queue, status.value).inc()
    recorded.step_duration.labels(kind.name, kind.queue).observe(duration)
    if record.decided_at is not None:
        recorded.queue_wait.labels(kind.queue).observe(max(0.0, started - record.decided_at))
    log.info(
        "run %s step %s attempt %d %s in %.3fs", run_id, step_id, attempt, status.value, duration
    )

    if outcome.cancelled:
        rt.mirror(run_id)  # the run ended elsewhere (cancel); its file copy is refreshed here
        raise StepCancelled(f"{run_id} {step_id}: {outcome.error}")
    if will_retry:
        rt.mirror(run_id)
        raise task.retry(
            countdown=min(MAX_BACKOFF_SECONDS, 2 ** (attempt - 1)),
            max_retries=step.max_attempts,
            exc=StepFailed(f"{run_id} {step_id}: {outcome.error}"),
        )
    if (outcome.ok or continued) and not over_budget:
        if workflow.steps[-1].id == step_id:
            _finish(rt, run_id, RunStatus.SUCCEEDED)
        return {**done, "status": status.value, "exit_code": outcome.exit_code}
    ended = RunStatus.FAILED
    if outcome.timed_out and decision.deadline_bound:
        ended = RunStatus.TIMED_OUT
    if over_budget:
        ended = RunStatus.BUDGET_EXCEEDED
    _finish(rt, run_id, ended, f"step {step_id} {status.value}: {outcome.error}")
    raise StepFailed(f"{run_id} {step_id}: {outcome.error}")


def _redact(outcome: StepOutcome, step_dir: Path, redactor: Redactor) -> StepOutcome:
    """Mask secrets (the worker's and the step's secret variables, token shapes) in what the
    step printed and in its error, before anything is stored or sent on."""
    for name in (STDOUT, STDERR, OUTPUT):
        path = step_dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        masked = redactor.bytes(data)
        if masked != data:
            path.write_bytes(masked)
    return replace(
        outcome,
        error=redactor.text(outcome.error) if outcome.error else outcome.error,
        metrics=redactor.json(dict(outcome.metrics)),
    )


# What of a step's metrics its step.finished event (and so the audit log) keeps.
_AUDITED = ("argv", "model", "cost_usd", "session_id", "turns", "sha256", "target", "commit")


def _audited(outcome: StepOutcome) -> dict[str, Any]:
    kept = {k: outcome.metrics[k] for k in _AUDITED if outcome.metrics.get(k) is not None}
    if outcome.metrics.get("denials"):
        kept["tool_denials"] = len(outcome.metrics["denials"])
    if "files" in outcome.metrics:
        kept["files"], kept["lines"] = outcome.metrics["files"], outcome.metrics.get("lines")
    return kept


def _await_approval(
    rt: Runtime, run_id: str, record: StepRecord, step_dir: Path, request: Mapping[str, Any]
) -> None:
    """Stop the run for a person: the step awaits approval of the diff with this hash."""
    now = time.time()
    rt.store.put_step(
        run_id,
        record.model_copy(
            update={
                "status": StepStatus.AWAITING_APPROVAL,
                "approval": {**request, "requested_at": now},
                "finished_at": now,
                "artifacts": rt.artifacts(rt.store.run(run_id)).listing(record.id),
            }
        ),
        {
            "type": "step.awaiting_approval",
            "step": record.id,
            "sha256": request.get("sha256"),
            "files": request.get("files"),
            "lines": request.get("lines"),
        },
    )
    reason = (
        f"step {record.id} awaits approval of its diff (sha256 {request.get('sha256')}): "
        f"`bcce workflow diff {run_id} {record.id}`, then `bcce workflow approve` or `reject`"
    )
    _finish(rt, run_id, RunStatus.AWAITING_APPROVAL, reason)


def _record_denials(rt: Runtime, run_id: str, step_id: str, denials: list[Any]) -> None:
    """Each tool call the policy denied inside the step, in the run's history and metrics."""
    for denial in denials:
        metrics.get().tool_denials.labels(str(denial.get("tool"))).inc()
    rt.store.emit_all(
        run_id,
        [
            {
                "type": "step.tool_denied",
                "step": step_id,
                "tool": d.get("tool"),
                "reason": d.get("reason"),
                "via": d.get("via"),
            }
            for d in denials
        ],
    )


def _spend(record: StepRecord, outcome: StepOutcome) -> dict[str, Any]:
    """The step record's model, usage and cost after this attempt (nothing for a cmd step)."""
    cost = outcome.metrics.get("cost_usd")
    usage = outcome.metrics.get("usage")
    if cost is None and not usage:
        return {}
    return {
        "model": outcome.metrics.get("model") or record.model,
        "usage": pricing.add_usage(record.usage, usage or {}),
        "cost_usd": record.cost_usd + float(cost or 0.0),
    }


def _charge(
    rt: Runtime, run_id: str, workflow: Workflow, step_id: str, outcome: StepOutcome
) -> float:
    """Add the step's cost to the run (and metrics); returns what the run has spent."""
    cost = float(outcome.metrics.get("cost_usd") or 0.0)
    model = str(outcome.metrics.get("model") or "default")
    labels = workflow.env.labels()
    recorded = metrics.get()
    for kind, tokens in (outcome.metrics.get("usage") or {}).items():
        recorded.agent_tokens.labels(model, kind).inc(tokens)
    recorded.cost.labels(model, labels.get("team", "")).inc(cost)

    def add(run: RunRecord) -> RunRecord:
        return run.model_copy(update={"cost_usd": run.cost_usd + cost, "labels": labels})

    updated = rt.store.update_run(run_id, add)
    return updated.cost_usd if updated is not None else cost


def _over_run_budget(workflow: Workflow, spent: float, org_cap: float | None) -> str | None:
    caps = (
        (workflow.env.max_cost_usd, "its env.max_cost_usd"),
        (org_cap, "the org policy's run budget"),
    )
    for cap, name in caps:
        if cap is not None and spent > cap:
            return f"the run has spent ${spent:.4f} of {name} ${cap:g}"
    return None


def _over_step_budget(step: Step, record: StepRecord, signed_cap: float | None) -> str | None:
    own = step.policy.max_cost_usd if step.policy else None
    cap = own if signed_cap is None else signed_cap  # the org may have lowered it
    if cap is None or record.cost_usd <= cap:
        return None
    name = "policy.max_cost_usd" if cap == own else "the org policy's step budget"
    return f"spent ${record.cost_usd:.4f} against its {name} ${cap:g}"
