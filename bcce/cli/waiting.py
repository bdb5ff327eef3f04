"""Following a run to its end from the CLI, and how a command ends with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from bcce.artifacts import LocalArtifactStore, write_atomic
from bcce.cli.options import F
from bcce.cli.output import Reporter
from bcce.errors import NotFound, UsageError
from bcce.records import RunRecord, RunStatus
from bcce.settings import Settings
from bcce.state import RunStore

if TYPE_CHECKING:
    from bcce.celery_app import BcceCelery


def follow_options(fn: F) -> F:
    """Options of the commands that enqueue a run and follow it (run, resume)."""
    options = [
        click.option(
            "--wait/--no-wait",
            default=True,
            show_default=True,
            help="Follow the run and exit with its code, or print the run id and exit 0.",
        ),
        click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text."),
        click.option(
            "--no-worker-check",
            is_flag=True,
            help="Enqueue without checking that a live worker consumes every queue.",
        ),
        click.option(
            "--timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Stop waiting after this long (exit 7; the run goes on).",
        ),
        *(
            click.option(
                name,
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                metavar="FILE",
                help=f"Write {what} when the run ends.",
            )
            for name, what in (
                ("--junit", "a JUnit XML report of the steps"),
                ("--summary-json", "the run's machine-readable summary (JSON)"),
            )
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def open_store(settings: Settings) -> RunStore:
    """The run store, checked to answer (exit 7 with a fix when it does not)."""
    store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
    store.ping(settings.effective_state_url)
    return store


def follow_run(
    store: RunStore,
    settings: Settings,
    run_id: str,
    reporter: Reporter,
    timeout: float | None,
    app: BcceCelery | None = None,
    queues: list[str] | None = None,
    after: str = "0-0",
) -> RunRecord:
    """Follow the run to its end; in distributed mode, notice when no worker is left; in
    embedded mode, act on a cancel requested by another process."""
    from bcce.runs import cancel_requested, check_workers, follow

    run_dir = Path(store.run(run_id).run_dir)

    def watch_cancel() -> None:
        cancel_requested(store, settings, run_id, run_dir)

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
            each_poll=watch_cancel if settings.embedded else None,
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


def end(
    store: RunStore,
    final: RunRecord,
    reporter: Reporter,
    junit: Path | None,
    summary_json: Path | None,
) -> NoReturn:
    """Report the run's end (and write its reports), then exit with the run's code."""
    from bcce.runs import summary

    steps = store.steps(final.id)
    data = summary(final, steps)
    if junit is not None:
        from bcce.junit import write_junit

        write_junit(junit, data)
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(summary_json, json.dumps(data, indent=2, sort_keys=True) + "\n")
    reporter.finished(final, steps, data)
    raise SystemExit(int(final.status.exit_code))


def check_reports(junit: Path | None, summary_json: Path | None, wait: bool) -> None:
    """Reports are written when the run ends, so they need ``--wait``."""
    if (junit or summary_json) and not wait:
        raise UsageError(
            "--junit and --summary-json need --wait: they are written when the run ends"
        )


def end_embedded(store: RunStore, run_id: str, exc: BaseException) -> None:
    """An embedded run cannot outlive this process: record how it ended."""
    status = RunStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
    reason = str(exc) or type(exc).__name__
    try:
        if store.finish(run_id, status, f"embedded run stopped with bcce: {reason}"):
            run = store.run(run_id)
            LocalArtifactStore(Path(run.run_dir)).mirror(
                run, store.steps(run_id), store.audit_lines(run_id)
            )
    except NotFound:
        pass  # it failed before it was recorded
