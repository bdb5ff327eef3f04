"""``bcce workflow``: run, validate, status and list workflow runs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bcce import policy
from bcce.cli.options import broker_option, parse_vars, settings_for, vars_option
from bcce.cli.output import Reporter
from bcce.cli.waiting import (
    check_reports,
    end,
    end_embedded,
    follow_options,
    follow_run,
    open_store,
)
from bcce.errors import UsageError
from bcce.records import RunStatus, new_run_id
from bcce.state import RunStore

if TYPE_CHECKING:
    pass

FILE = click.Path(dir_okay=False, path_type=Path)


@click.group("workflow")
def group() -> None:
    """Validate, run and inspect workflows."""


@group.command("validate")
@click.argument("files", nargs=-1, required=True, type=FILE)
@vars_option
def validate(files: tuple[Path, ...], variables: tuple[str, ...]) -> None:
    """Check workflow files and report every problem at once (exit 2 if any), including
    steps the org policy (BCCE_POLICY_FILE) forbids."""
    from bcce import orgpolicy
    from bcce.errors import WorkflowError
    from bcce.loader import load_workflow
    from bcce.steptypes import registry

    settings = settings_for(None)
    org = orgpolicy.current(settings.policy_file)
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
        if org is not None:
            rules = org.for_team(workflow.env.labels().get("team"))
            forbidden = [
                f"{path}: step {step.id!r}: {denied[1]} ({denied[0]}; org policy "
                f"{settings.policy_file})"
                for step in workflow.steps
                if (
                    denied := policy.static_denial(
                        workflow, step, policy.Limits.of(settings), rules
                    )
                )
            ]
            if forbidden:
                problems += forbidden
                continue
        click.echo(f"{path}: ok ({workflow.workflow!r}, {len(workflow.steps)} steps)")
    if problems:
        raise WorkflowError(problems)


@group.command("run")
@click.argument("file", type=FILE)
@vars_option
@click.option("--dry-run", is_flag=True, help="Validate and print the compiled plan only.")
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workspace: in a git repository the steps work in a copy of it, and only "
    "apply_diff steps change it; elsewhere the steps run in it.",
)
@click.option(
    "--approve-all",
    is_flag=True,
    help="apply_diff steps apply without waiting for approval (trusted local use only).",
)
@follow_options
@broker_option
def run(
    file: Path,
    variables: tuple[str, ...],
    wait: bool,
    dry_run: bool,
    approve_all: bool,
    as_json: bool,
    workspace: Path,
    no_worker_check: bool,
    timeout: float | None,
    junit: Path | None,
    summary_json: Path | None,
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
    check_reports(junit, summary_json, wait)
    if settings.embedded and not wait:
        raise UsageError(
            "--no-wait needs a broker (BCCE_BROKER_URL or --broker): an embedded "
            "run lives only as long as this process"
        )

    from bcce.runs import check_workers, run_dir_for, submit

    plan.require_runnable()
    workspace = workspace.resolve()
    run_dir = run_dir_for(workflow, settings, workspace, run_id)
    store = open_store(settings)
    send = functools.partial(
        submit,
        isolate=settings.isolate,
        approve_all=approve_all,
        artifacts_url=settings.artifacts_url,
    )
    if settings.embedded:
        from workers.app import build  # embedded runs are their own workers
        from workers.embedded import embedded_workers

        app = build(settings)
        with embedded_workers(app, plan.queues):
            try:
                record = send(app, store, workflow, plan, workspace, run_dir)
                reporter.submitted(record, "embedded")
                final = follow_run(store, settings, run_id, reporter, timeout)
            except BaseException as exc:
                end_embedded(store, run_id, exc)
                if isinstance(exc, KeyboardInterrupt):
                    click.echo(f"bcce: run {run_id} cancelled (interrupted)", err=True)
                    raise SystemExit(int(RunStatus.CANCELLED.exit_code)) from None
                raise
    else:
        from bcce.celery_app import make_app

        app = make_app(settings, types)
        if not no_worker_check:
            check_workers(app, plan.queues, settings.worker_check_timeout)
        record = send(app, store, workflow, plan, workspace, run_dir)
        if not wait:
            click.echo(record.id)
            return
        reporter.submitted(record, "distributed")
        final = follow_run(store, settings, run_id, reporter, timeout, app, plan.queues)
    end(store, final, reporter, junit, summary_json)


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
