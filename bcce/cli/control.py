"""``bcce workflow resume`` and ``cancel``: acting on runs that exist."""

from __future__ import annotations

from pathlib import Path

import click

from bcce import policy
from bcce.cli.options import broker_option, settings_for
from bcce.cli.output import Reporter
from bcce.cli.waiting import check_reports, end, follow_options, follow_run, open_store
from bcce.errors import UsageError


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
    the run's deadline counts again from now.
    """
    from bcce.celery_app import make_app
    from bcce.compiler import compile_plan
    from bcce.loader import from_snapshot
    from bcce.runs import check_workers, resubmit, resume_point
    from bcce.steptypes import registry

    check_reports(junit, summary_json, wait)
    settings = settings_for(broker)
    if settings.embedded:
        raise UsageError(
            "resume needs a broker (BCCE_BROKER_URL or --broker): an embedded "
            "run keeps no run store once its process ends"
        )
    store = open_store(settings)
    run, steps = store.run_with_steps(run_id)
    start = resume_point(run, steps, start_at)
    types = registry()
    workflow = from_snapshot(store.snapshot(run_id), types)
    plan = compile_plan(workflow, types, policy.Limits.of(settings), run_id, start_at=start)
    plan.require_runnable()
    app = make_app(settings, types)
    if not no_worker_check:
        check_workers(app, plan.queues, settings.worker_check_timeout)
    after = store.last_event_id(run_id)
    record = resubmit(app, store, workflow, plan, steps)
    if not wait:
        click.echo(record.id)
        return
    reporter = Reporter(as_json)
    reporter.resumed(record, start)
    final = follow_run(store, settings, run_id, reporter, timeout, app, plan.queues, after)
    end(store, final, reporter, junit, summary_json)


@click.command("cancel")
@click.argument("run_id")
@click.option("--reason", default=None, help="Recorded with the run.")
@broker_option
def cancel(run_id: str, reason: str | None, broker: str | None) -> None:
    """Cancel a run: no further step passes the gate, the step in flight is stopped."""
    import getpass
    import socket

    from bcce.runs import cancel as cancel_run

    settings = settings_for(broker)
    if settings.embedded:
        raise UsageError(
            "an embedded run lives in the process running it: press Ctrl-C there "
            "(cancel needs BCCE_BROKER_URL or --broker)"
        )
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    cancel_run(open_store(settings), run_id, who, reason)
    click.echo(f"run {run_id} cancelled; a step in flight stops within a few seconds")
