"""``bcce workflow resume``, ``cancel``, ``diff``, ``approve`` and ``reject``: acting on
runs that exist."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bcce.cli.options import broker_option, settings_for
from bcce.cli.waiting import check_reports, follow_options, open_store
from bcce.errors import UsageError
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus
from bcce.settings import Settings

if TYPE_CHECKING:
    from bcce.cli.attach import Attached

PROPOSED = "proposed.diff"


@click.command("resume")
@click.argument("run_id")
@click.option(
    "--from",
    "start_at",
    default=None,
    metavar="STEP",
    help="Start from this step (default: the first that did not succeed).",
)
@follow_options
@broker_option
def resume(
    run_id: str,
    start_at: str | None,
    wait: bool,
    as_json: bool,
    no_worker_check: bool,
    timeout: float | None,
    junit: Path | None,
    summary_json: Path | None,
    broker: str | None,
) -> None:
    """Continue an ended run from its first unfinished step (or --from STEP).

    The stored workflow snapshot is used, earlier steps and their artifacts are kept, and
    the run's deadline counts again from now. Embedded runs are continued in this process.
    """
    from bcce.cli.attach import attach, continue_run
    from bcce.runs import resume_point

    check_reports(junit, summary_json, wait)
    attached = attach(settings_for(broker), run_id)
    start = resume_point(attached.run, attached.steps, start_at)
    continue_run(
        attached,
        start,
        wait=wait,
        as_json=as_json,
        no_worker_check=no_worker_check,
        timeout=timeout,
        junit=junit,
        summary_json=summary_json,
    )


@click.command("cancel")
@click.argument("run_id")
@click.option("--reason", default=None, help="Recorded with the run.")
@broker_option
def cancel(run_id: str, reason: str | None, broker: str | None) -> None:
    """Cancel a run: no further step passes the gate, the step in flight is stopped.

    An embedded run is cancelled by the process running it, which looks for the request
    once a poll (``BCCE_WAIT_POLL_SECONDS``).
    """
    from bcce.runs import cancel as cancel_run
    from bcce.runs import identity, request_cancel

    settings = settings_for(broker)
    if settings.embedded:
        request_cancel(settings, run_id, identity(), reason)
        click.echo(f"run {run_id}: cancel requested; the process running it stops it shortly")
        return
    cancel_run(open_store(settings), settings, run_id, identity(), reason)
    click.echo(f"run {run_id} cancelled; a step in flight stops within a few seconds")


@click.command("diff")
@click.argument("run_id")
@click.argument("step_id")
@broker_option
def diff(run_id: str, step_id: str, broker: str | None) -> None:
    """Print the diff an apply_diff step proposes (its SHA-256 goes to stderr)."""
    from bcce.patches import digest
    from bcce.runs import load_run

    settings = settings_for(broker)
    run, steps = load_run(settings, run_id)
    step = _step(run, steps, step_id)
    patch = _proposed(settings, run, step)
    approval = step.approval or {}
    state = step.status.value
    if approval.get("approved_sha") == digest(patch):
        state += f", approved by {approval.get('approved_by')}"
    click.echo(f"# {run_id} {step_id}: sha256 {digest(patch)} ({state})", err=True)
    sys.stdout.buffer.write(patch)


@click.command("approve")
@click.argument("run_id")
@click.argument("step_id")
@click.option(
    "--sha",
    default=None,
    metavar="SHA256",
    help="The hash `bcce workflow diff` showed (at least 12 digits): approve only that diff.",
)
@click.option("--comment", default=None, help="Recorded with the approval.")
@follow_options
@broker_option
def approve(
    run_id: str,
    step_id: str,
    sha: str | None,
    comment: str | None,
    wait: bool,
    as_json: bool,
    no_worker_check: bool,
    timeout: float | None,
    junit: Path | None,
    summary_json: Path | None,
    broker: str | None,
) -> None:
    """Approve the diff an apply_diff step awaits, then continue the run from that step.

    The diff on record is hashed again and must still be the one that was shown; the step
    applies only a diff with that hash.
    """
    from bcce.cli.attach import attach, continue_run
    from bcce.runs import identity

    check_reports(junit, summary_json, wait)
    if sha is not None and len(sha) < 12:
        raise UsageError("--sha needs at least 12 hex digits of the diff's SHA-256")
    attached = attach(settings_for(broker), run_id)
    pending = _awaiting(attached, step_id)
    _may_approve(attached, step_id, identity())
    if sha is not None and not pending.startswith(sha.lower()):
        raise UsageError(
            f"step {step_id} awaits approval of sha256 {pending}, not {sha}: review it "
            f"again with `bcce workflow diff {run_id} {step_id}`"
        )
    who = identity()
    record = {"approved_sha": pending, "approved_by": who, "approved_at": time.time()}
    if comment:
        record["comment"] = comment
    _decide(attached, step_id, record, StepStatus.PENDING, "step.approved", who, comment)
    continue_run(
        attached,
        step_id,
        wait=wait,
        as_json=as_json,
        no_worker_check=no_worker_check,
        timeout=timeout,
        junit=junit,
        summary_json=summary_json,
    )


@click.command("reject")
@click.argument("run_id")
@click.argument("step_id")
@click.option("--reason", required=True, help="Why; recorded with the run.")
@broker_option
def reject(run_id: str, step_id: str, reason: str, broker: str | None) -> None:
    """Reject the diff an apply_diff step awaits: the run ends rejected (exit 4)."""
    from bcce.cli.attach import attach
    from bcce.runs import identity

    attached = attach(settings_for(broker), run_id)
    pending = _awaiting(attached, step_id)
    who = identity()
    record = {"rejected_by": who, "rejected_at": time.time(), "reason": reason, "sha": pending}
    _decide(attached, step_id, record, StepStatus.REJECTED, "step.rejected", who, reason)
    error = f"step {step_id} rejected by {who}: {reason}"

    def rejected(run: RunRecord) -> RunRecord | None:
        if run.status != RunStatus.AWAITING_APPROVAL:
            return None
        return run.model_copy(update={"status": RunStatus.REJECTED, "error": error})

    event = {"type": "run.finished", "status": RunStatus.REJECTED.value, "error": error}
    if attached.store.update_run(run_id, rejected, event) is None:
        raise UsageError(f"run {run_id} changed while rejecting: check `bcce workflow status`")
    attached.mirror()
    click.echo(f"run {run_id} rejected: {reason}")


def _step(run: RunRecord, steps: list[StepRecord], step_id: str) -> StepRecord:
    for step in steps:
        if step.id == step_id:
            return step
    raise UsageError(f"run {run.id} has no step {step_id!r}; steps: {', '.join(run.step_ids)}")


def _proposed(settings: Settings, run: RunRecord, step: StepRecord) -> bytes:
    from bcce.artifacts import store_for

    artifacts = store_for(run, settings)
    artifacts.pull()
    path = artifacts.run_dir / step.id / PROPOSED
    try:
        return path.read_bytes()
    except OSError:
        raise UsageError(
            f"step {step.id} of run {run.id} has no proposed diff at {path} (is it an "
            "apply_diff step that ran, and is the run's folder on this host?)"
        ) from None


def _awaiting(attached: Attached, step_id: str) -> str:
    """The SHA-256 the step awaits approval of, checked against the diff on record."""
    from bcce.patches import digest

    run = attached.run
    step = _step(run, attached.steps, step_id)
    pending = (step.approval or {}).get("sha256")
    if (
        run.status != RunStatus.AWAITING_APPROVAL
        or step.status != StepStatus.AWAITING_APPROVAL
        or not pending
    ):
        raise UsageError(
            f"step {step_id} of run {run.id} is not awaiting approval (run "
            f"{run.status.value}, step {step.status.value})"
        )
    actual = digest(_proposed(attached.settings, run, step))
    if actual != pending:
        raise UsageError(
            f"the diff of step {step_id} on disk hashes to {actual}, not the {pending} that "
            "awaits approval: it was changed; nothing approved"
        )
    return str(pending)


def _may_approve(attached: Attached, step_id: str, who: str) -> None:
    """Refuse (exit 3) an approver the org policy the gate signed for this step excludes."""
    from bcce.errors import PolicyDenied
    from bcce.policy import Effective, approver_denial

    grant = _step(attached.run, attached.steps, step_id).grant or {}
    signed = (grant.get("payload") or {}).get("policy")
    if not signed:
        return
    reason = approver_denial(Effective.from_json(signed), who, attached.run.submitted_by)
    if reason:
        raise PolicyDenied(f"cannot approve step {step_id} of run {attached.run.id}: {reason}")


def _decide(
    attached: Attached,
    step_id: str,
    decision: dict[str, Any],
    status: StepStatus,
    kind: str,
    who: str,
    note: str | None,
) -> None:
    def change(step: StepRecord) -> StepRecord | None:
        if step.status != StepStatus.AWAITING_APPROVAL:
            return None
        return step.model_copy(
            update={"approval": {**(step.approval or {}), **decision}, "status": status}
        )

    sha = decision.get("approved_sha") or decision.get("sha")
    event = {"type": kind, "step": step_id, "by": who, "sha256": sha}
    if note:
        event["comment" if kind == "step.approved" else "reason"] = note
    if attached.store.update_step(attached.run.id, step_id, change, event) is None:
        raise UsageError(f"step {step_id} changed meanwhile: check `bcce workflow status`")
