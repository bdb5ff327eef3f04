"""``bcce workflow``: run, validate, status and list workflow runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from bcce import policy
from bcce.artifacts import LocalArtifactStore
from bcce.cli.options import F, broker_option, parse_vars, settings_for, vars_option
from bcce.cli.output import Reporter
from bcce.errors import NotFound, UsageError
from bcce.records import RunRecord, RunStatus, new_run_id
from bcce.settings import Settings
from bcce.state import RunStore

if TYPE_CHECKING:
    from bcce.celery_app import BcceCelery

FILE = click.Path(dir_okay=False, path_type=Path)


@click.group("workflow")
def group() -> None:
    """Validate, run and inspect workflows."""


@group.command("validate")
@click.argument("files", nargs=-1, required=True, type=FILE)
@vars_option
def validate(files: tuple[Path, ...], variables: tuple[str, ...]) -> None:
    """Check workflow files and report every problem at once (exit 2 if any)."""
    from bcce.errors import WorkflowError
    from bcce.loader import load_workflow
    from bcce.steptypes import registry

    settings = settings_for(None)
    problems: list[str] = []
    for path in files:
        try:
            workflow = load_workflow(
                path,
                registry(),
                variables=parse_vars(variables),
                max_bytes=settings.max_workflow_bytes,
            )
        except WorkflowError as exc:
            problems += exc.problems
            continue
        click.echo(f"{path}: ok ({workflow.workflow!r}, {len(workflow.steps)} steps)")
    if problems:
        raise WorkflowError(problems)


def junit_option(fn: F) -> F:
    """``--junit FILE``: write the run's steps as a JUnit report when it ends."""
    decorated: F = click.option(
        "--junit",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        metavar="FILE",
        help="Write a JUnit XML report of the steps when the run ends.",
    )(fn)
    return decorated


@group.command("run")
@click.argument("file", type=FILE)
@vars_option
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Follow the run and exit with its code, or print the run id and exit 0.",
)
@click.option("--dry-run", is_flag=True, help="Validate and print the compiled plan only.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory the steps run in.",
)
@click.option(
    "--no-worker-check",
    is_flag=True,
    help="Enqueue without checking that a live worker consumes every queue.",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop waiting after this long (exit 7; the run goes on).",
)
@junit_option
@broker_option
def run(
    file: Path,
    variables: tuple[str, ...],
    wait: bool,
    dry_run: bool,
    as_json: bool,
    workspace: Path,
    no_worker_check: bool,
    timeout: float | None,
    junit: Path | None,
    broker: str | None,
) -> None:
    """Compile FILE into a Celery chain and run it."""
    from bcce.compiler import compile_plan
    from bcce.loader import load_workflow
    from bcce.steptypes import registry

    settings = settings_for(broker)
    types = registry()
    run_id = new_run_id()
    workflow = load_workflow(
        file,
        types,
        variables=parse_vars(variables),
        run_id=run_id,
        max_bytes=settings.max_workflow_bytes,
    )
    plan = compile_plan(workflow, types, policy.Limits.of(settings), run_id)
    reporter = Reporter(as_json)
    if dry_run:
        reporter.plan(plan)
        return
    _check_junit(junit, wait)
    if settings.embedded and not wait:
        raise UsageError(
            "--no-wait needs a broker (BCCE_BROKER_URL or --broker): an embedded "
            "run lives only as long as this process"
        )

    from bcce.runs import check_workers, run_dir_for, submit

    plan.require_runnable()
    workspace = workspace.resolve()
    run_dir = run_dir_for(workflow, settings, workspace, run_id)
    store = _store(settings)
    if settings.embedded:
        from workers.app import build  # embedded runs are their own workers
        from workers.embedded import embedded_workers

        app = build(settings)
        with embedded_workers(app, plan.queues):
            try:
                record = submit(app, store, workflow, plan, workspace, run_dir)
                reporter.submitted(record, "embedded")
                final = _wait(store, settings, run_id, reporter, timeout)
            except BaseException as exc:
                _end_embedded(store, run_id, exc)
                if isinstance(exc, KeyboardInterrupt):
                    click.echo(f"bcce: run {run_id} cancelled (interrupted)", err=True)
                    raise SystemExit(int(RunStatus.CANCELLED.exit_code)) from None
                raise
    else:
        from bcce.celery_app import make_app

        app = make_app(settings, types)
        if not no_worker_check:
            check_workers(app, plan.queues, settings.worker_check_timeout)
        record = submit(app, store, workflow, plan, workspace, run_dir)
        if not wait:
            click.echo(record.id)
            return
        reporter.submitted(record, "distributed")
        final = _wait(store, settings, run_id, reporter, timeout, app, plan.queues)
    _end(store, final, reporter, junit)


def _store(settings: Settings) -> RunStore:
    store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
    store.ping(settings.effective_state_url)
    return store


def _wait(
    store: RunStore,
    settings: Settings,
    run_id: str,
    reporter: Reporter,
    timeout: float | None,
    app: BcceCelery | None = None,
    queues: list[str] | None = None,
    after: str = "0-0",
) -> RunRecord:
    """Follow the run to its end; in distributed mode, notice when no worker is left."""
    from bcce.runs import check_workers, follow

    def stall_check() -> None:
        assert app is not None and queues is not None
        check_workers(app, queues, settings.worker_check_timeout, unsure_ok=True)

    try:
        return follow(
            store,
            run_id,
            reporter.event,
            poll_seconds=settings.wait_poll_seconds,
            timeout=timeout,
            after=after,
            stall_check=stall_check if app else None,
            stall_seconds=settings.stall_check_seconds,
        )
    except KeyboardInterrupt:
        if settings.embedded:
            raise  # the run lives here: it ends with this process (see _end_embedded)
        click.echo(
            f"bcce: stopped waiting; run {run_id} goes on: `bcce workflow status "
            f"{run_id}`, or `bcce workflow cancel {run_id}`",
            err=True,
        )
        raise SystemExit(130) from None


def _end(store: RunStore, final: RunRecord, reporter: Reporter, junit: Path | None) -> NoReturn:
    from bcce.runs import summary

    steps = store.steps(final.id)
    data = summary(final, steps)
    if junit is not None:
        from bcce.junit import write_junit

        write_junit(junit, data)
    reporter.finished(final, steps, data)
    raise SystemExit(int(final.status.exit_code))


def _check_junit(junit: Path | None, wait: bool) -> None:
    if junit is not None and not wait:
        raise UsageError("--junit needs --wait: the report is written when the run ends")


@group.command("resume")
@click.argument("run_id")
@click.option(
    "--from",
    "start_at",
    default=None,
    metavar="STEP",
    help="Start from this step (default: the first that did not succeed).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Follow the run and exit with its code, or print the run id and exit 0.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@click.option(
    "--no-worker-check",
    is_flag=True,
    help="Enqueue without checking that a live worker consumes every queue.",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop waiting after this long (exit 7; the run goes on).",
)
@junit_option
@broker_option
def resume(
    run_id: str,
    start_at: str | None,
    wait: bool,
    as_json: bool,
    no_worker_check: bool,
    timeout: float | None,
    junit: Path | None,
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

    settings = settings_for(broker)
    if settings.embedded:
        raise UsageError(
            "resume needs a broker (BCCE_BROKER_URL or --broker): an embedded "
            "run keeps no run store once its process ends"
        )
    store = _store(settings)
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
    final = _wait(store, settings, run_id, reporter, timeout, app, plan.queues, after)
    _end(store, final, reporter, junit)


@group.command("cancel")
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
    cancel_run(_store(settings), run_id, who, reason)
    click.echo(f"run {run_id} cancelled; a step in flight stops within a few seconds")


@group.command("status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@broker_option
def status(run_id: str, as_json: bool, broker: str | None) -> None:
    """Show a run and its steps; exits with the run's code once it ended."""
    from bcce.runs import load_run, summary

    settings = settings_for(broker)
    run, steps = load_run(settings, run_id)
    Reporter(as_json).status(run, steps, summary(run, steps))
    if run.status.terminal and run.status != RunStatus.SUCCEEDED:
        raise SystemExit(int(run.status.exit_code))


@group.command("list")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice([s.value for s in RunStatus]),
    default=None,
    help="Only runs in this status.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one run each.")
@broker_option
def list_runs(status_filter: str | None, limit: int, as_json: bool, broker: str | None) -> None:
    """List recent runs, newest first."""
    settings = settings_for(broker)
    wanted = RunStatus(status_filter) if status_filter else None
    if settings.embedded:
        from bcce.runs import runs_on_disk

        runs = runs_on_disk(settings, limit, wanted)
    else:
        store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
        store.ping(settings.effective_state_url)
        runs = store.list_runs(limit, wanted)
    reporter = Reporter(as_json)
    if as_json:
        for r in runs:
            reporter.json(r.model_dump(mode="json"))
        return
    from rich.table import Table

    table = Table()
    for column in ("run", "workflow", "status", "steps", "error"):
        table.add_column(column)
    for r in runs:
        table.add_row(
            r.id,
            r.workflow,
            r.status.value,
            str(len(r.step_ids)),
            r.error or "",
        )
    reporter.console.print(table)


def _end_embedded(store: RunStore, run_id: str, exc: BaseException) -> None:
    """An embedded run cannot outlive this process: record how it ended."""
    status = RunStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    reason = str(exc) or type(exc).__name__
    try:
        if store.finish(run_id, status, f"embedded run stopped with bcce: {reason}"):
            run = store.run(run_id)
            LocalArtifactStore(Path(run.run_dir)).mirror(run, store.steps(run_id))
    except NotFound:
        pass  # it failed before it was recorded
