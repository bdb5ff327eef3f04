"""Acting on a run that already exists, in either mode: resume, approve, reject.

Distributed runs live in Redis and their pools pick up what is enqueued. An embedded run
lives on disk once its process has ended (``run-state.json`` and ``workflow.json``): it is
loaded into this process's run store and continued by embedded workers started here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bcce import policy
from bcce.artifacts import store_for
from bcce.cli.output import Reporter
from bcce.cli.waiting import end, end_embedded, follow_run, open_store
from bcce.errors import NotFound, UsageError
from bcce.records import RunRecord, RunStatus, StepRecord
from bcce.settings import Settings
from bcce.state import RunStore
from bcce.workflow import Workflow

if TYPE_CHECKING:
    from bcce.celery_app import BcceCelery
    from bcce.compiler import Plan


@dataclass
class Attached:
    """A run and what it takes to continue it."""

    settings: Settings
    store: RunStore
    run: RunRecord
    steps: list[StepRecord]
    workflow: Workflow

    def plan(self, start_at: str) -> Plan:
        """The chain from start_at to the end, compiled as at submission."""
        from bcce.compiler import compile_plan
        from bcce.steptypes import registry

        plan = compile_plan(
            self.workflow,
            registry(),
            policy.Limits.of(self.settings),
            self.run.id,
            start_at=start_at,
        )
        plan.require_runnable()
        return plan

    def mirror(self) -> None:
        """Refresh run-state.json (where this host can see the run's folder)."""
        run, steps = self.store.run_with_steps(self.run.id)
        if self.settings.embedded or Path(run.run_dir).is_dir() or run.artifacts_url:
            store_for(run, self.settings).mirror(run, steps, self.store.audit_lines(run.id))


def attach(settings: Settings, run_id: str) -> Attached:
    """The run from the run store, or (embedded) from its folder into this process's store."""
    from bcce.loader import from_snapshot
    from bcce.runs import load_run
    from bcce.steptypes import registry

    store = open_store(settings)
    if not settings.embedded:
        run, steps = store.run_with_steps(run_id)
        snapshot = store.snapshot(run_id)
    else:
        run, steps = load_run(settings, run_id)
        try:
            artifacts = store_for(run, settings)
            artifacts.pull()
            snapshot = artifacts.read_snapshot()
        except (OSError, ValueError) as exc:
            raise NotFound(
                f"run {run_id} has no readable workflow.json in {run.run_dir} ({exc}): it was "
                "started by an older bcce and cannot be continued"
            ) from None
        try:
            store.run(run_id)
        except NotFound:
            store.create(run, snapshot, steps, announce=False)
            store.restore_audit(run_id, artifacts.read_audit())
    return Attached(settings, store, run, steps, from_snapshot(snapshot, registry()))


@contextmanager
def workers_for(attached: Attached, plan: Plan) -> Iterator[BcceCelery]:
    """An app whose workers will take the plan: embedded threads, or the live pools."""
    settings = attached.settings
    if settings.embedded:
        from workers.app import build
        from workers.embedded import embedded_workers

        app = build(settings)
        with embedded_workers(app, plan.queues):
            yield app
        return
    from bcce.celery_app import make_app
    from bcce.steptypes import registry

    yield make_app(settings, registry())


def continue_run(
    attached: Attached,
    start_at: str,
    *,
    wait: bool,
    as_json: bool,
    no_worker_check: bool,
    timeout: float | None,
    junit: Path | None,
    summary_json: Path | None,
) -> None:
    """Enqueue the run again from start_at and (with wait) follow it to its end."""
    from bcce.runs import check_workers, resubmit

    settings, store, run_id = attached.settings, attached.store, attached.run.id
    if settings.embedded and not wait:
        raise UsageError(
            "--no-wait needs a broker (BCCE_BROKER_URL or --broker): an embedded run goes "
            "on only while this process runs it"
        )
    plan = attached.plan(start_at)
    reporter = Reporter(as_json)
    with workers_for(attached, plan) as app:
        if not settings.embedded and not no_worker_check:
            check_workers(app, plan.queues, settings.worker_check_timeout)
        after = store.last_event_id(run_id)
        try:
            record = resubmit(app, store, attached.workflow, plan, store.steps(run_id))
            if not wait:
                click.echo(record.id)
                return
            reporter.resumed(record, start_at)
            distributed = not settings.embedded
            final = follow_run(
                store,
                settings,
                run_id,
                reporter,
                timeout,
                app if distributed else None,
                plan.queues if distributed else None,
                after,
            )
        except BaseException as exc:
            if settings.embedded:
                end_embedded(store, run_id, exc)
                if isinstance(exc, KeyboardInterrupt):
                    click.echo(f"bcce: run {run_id} cancelled (interrupted)", err=True)
                    raise SystemExit(int(RunStatus.CANCELLED.exit_code)) from None
            raise
    end(store, final, reporter, junit, summary_json)
