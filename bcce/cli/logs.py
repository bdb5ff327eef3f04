"""``bcce logs``: a run's events and its steps' output, printed or followed until it ends."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path

import click

from bcce.artifacts import STDERR, STDOUT
from bcce.cli.options import broker_option, settings_for
from bcce.cli.output import Reporter
from bcce.errors import NotFound, UsageError
from bcce.records import RunRecord, StepRecord, StepStatus
from bcce.settings import Settings
from bcce.state import Event, RunStore

DEFAULT_LINES = 50
STREAMS = (STDOUT, STDERR)
FINISHED = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.CANCELLED)


@click.command("logs")
@click.argument("run_id")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing events until the run ends (needs a broker)."
)
@click.option(
    "--step", "step_id", metavar="ID", default=None, help="Only this step's events and output."
)
@click.option("--json", "as_json", is_flag=True, help="Events as JSON lines.")
@click.option(
    "--output/--no-output",
    default=True,
    show_default=True,
    help="When a step finishes, print the end of its stdout and stderr (files on this machine).",
)
@click.option(
    "--lines",
    type=click.IntRange(min=1),
    default=DEFAULT_LINES,
    show_default=True,
    metavar="N",
    help="How many lines of each step's output to print.",
)
@broker_option
def logs(
    run_id: str,
    follow: bool,
    step_id: str | None,
    as_json: bool,
    output: bool,
    lines: int,
    broker: str | None,
) -> None:
    """Print the events of RUN_ID and the output of its steps.

    With a broker the events come from the run's stream in Redis; --follow waits for more
    until the run ends. Embedded runs (no broker) keep no stream once they end: their events
    are rebuilt from RUN_ID/run-state.json in BCCE_RUNS_DIR (default .bcce_runs), one per
    step and status reached, and they cannot be followed from another process.

    Exits with the run's code once it ended, else 0.
    """
    settings = settings_for(broker)
    reporter = Reporter(as_json)
    if settings.embedded:
        final, steps = _embedded_run(settings, run_id)
        _check_step(final, step_id)
        if follow and not final.status.terminal:
            raise UsageError(
                f"embedded run {run_id} has not ended and cannot be followed from another "
                "process: pass --broker for distributed runs, or wait and run without --follow"
            )
        records = {s.id: s for s in steps}
        show = _printer(reporter, final, "embedded", step_id, output, lines, records.__getitem__)
        for event in events_from_state(final, steps):
            show(event)
    else:
        store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
        store.ping(settings.effective_state_url)
        run = store.run(run_id)
        _check_step(run, step_id)
        show = _printer(
            reporter, run, "distributed", step_id, output, lines, lambda s: store.step(run_id, s)
        )
        poll_ms = int(settings.wait_poll_seconds * 1000)
        final = _replay(store, run_id, show, follow=follow, poll_ms=poll_ms)
        if final.status.terminal:
            steps = store.steps(run_id)
    if not final.status.terminal:
        return
    # With --step, JSON lines stay that step's own; the text ends with the run's line.
    if not (as_json and step_id):
        from bcce.runs import summary

        reporter.finished(final, steps, summary(final, steps))
    raise SystemExit(int(final.status.exit_code))


def _replay(
    store: RunStore, run_id: str, show: Callable[[Event], None], *, follow: bool, poll_ms: int
) -> RunRecord:
    """Show the run's events from the start; when following, until the run ended."""
    last = "0-0"
    while True:
        batch = store.events(run_id, after=last, block_ms=poll_ms if follow else None)
        for entry_id, event in batch:
            last = entry_id
            show(event)
        # A run.finished may be followed by run.resumed: only the record says it is over.
        if follow and batch and batch[-1][1].get("type") != "run.finished":
            continue
        run = store.run(run_id)
        if run.status.terminal:
            # The record and its run.finished are written together; show what came since.
            for _, event in store.events(run_id, after=last):
                show(event)
            return run
        if not follow:
            return run


def _printer(
    reporter: Reporter,
    run: RunRecord,
    mode: str,
    step_id: str | None,
    output: bool,
    lines: int,
    record_of: Callable[[str], StepRecord],
) -> Callable[[Event], None]:
    """A function showing one event (and, after a step finished, its output)."""

    def show(event: Event) -> None:
        step = event.get("step")
        if step_id is not None and step != step_id:
            return
        if event.get("type") == "run.submitted" and not reporter.as_json:
            reporter.submitted(run, mode)
        else:
            reporter.event(event)
        if output and step and event.get("type") == "step.finished":
            _show_output(reporter, str(step), record_of(str(step)).artifacts, lines)

    return show


def _show_output(reporter: Reporter, step: str, artifacts: dict[str, str], lines: int) -> None:
    """The last lines of a step's stdout and stderr, each line prefixed ``[step] ``."""
    missing = []
    for name in STREAMS:
        where = artifacts.get(name)
        if not where:
            continue
        path = Path(where)
        if not path.is_file():
            missing.append(where)
            continue
        tail, total = _tail(path, lines)
        if reporter.as_json:
            reporter.json(
                {
                    "type": "step.output",
                    "step": step,
                    "stream": name.removesuffix(".txt"),
                    "path": where,
                    "lines": tail,
                    "omitted": total - len(tail),
                }
            )
            continue
        err = name == STDERR
        if total > len(tail):
            click.echo(f"[{step}] ... {total - len(tail)} earlier lines in {where}", err=err)
        for line in tail:
            click.echo(f"[{step}] {line}", err=err)
    if missing and not reporter.as_json:
        click.echo(f"[{step}] output is not on this machine: {', '.join(missing)}")


def _tail(path: Path, lines: int) -> tuple[list[str], int]:
    """The last lines of a text file and how many lines it has."""
    total = 0
    kept: deque[str] = deque(maxlen=lines)
    # Streams the file: outputs are capped per step, but the cap is the operator's choice.
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            total += 1
            kept.append(line.rstrip("\r\n"))
    return list(kept), total


def _check_step(run: RunRecord, step_id: str | None) -> None:
    if step_id is not None and step_id not in run.step_ids:
        raise NotFound(f"run {run.id} has no step {step_id!r}; steps: {', '.join(run.step_ids)}")


def _embedded_run(settings: Settings, run_id: str) -> tuple[RunRecord, list[StepRecord]]:
    from bcce.runs import load_run

    return load_run(settings, run_id)


def events_from_state(run: RunRecord, steps: list[StepRecord]) -> list[Event]:
    """The events a run's stream would hold, rebuilt from its records (marked ``rebuilt``).

    One event per step and status reached: earlier attempts of a retried step are not kept.
    """
    events: list[Event] = [{"type": "run.submitted", "time": run.created_at}]
    for s in steps:
        if s.decision is not None:
            kind = "step.allowed" if s.decision.get("allowed") else "step.denied"
            events.append(
                {
                    "type": kind,
                    "step": s.id,
                    "rule": s.decision.get("rule"),
                    "reason": s.decision.get("reason"),
                }
            )
        if s.started_at is not None:
            events.append(
                {
                    "type": "step.started",
                    "step": s.id,
                    "time": s.started_at,
                    "attempt": s.attempts,
                    "worker": s.worker,
                }
            )
        if s.status in (*FINISHED, StepStatus.RETRYING) and s.finished_at is not None:
            events.append(
                {
                    "type": "step.retrying" if s.status == StepStatus.RETRYING else "step.finished",
                    "step": s.id,
                    "time": s.finished_at,
                    # A waiting retry keeps no record of whether the attempt failed or timed out.
                    "status": "failed" if s.status == StepStatus.RETRYING else s.status.value,
                    "exit_code": s.exit_code,
                    "error": s.error,
                    "duration_seconds": (
                        None if s.duration_seconds is None else round(s.duration_seconds, 3)
                    ),
                    "attempt": s.attempts,
                    "continued": s.continued,
                }
            )
    if run.status.terminal:
        events.append(
            {
                "type": "run.finished",
                "time": run.finished_at,
                "status": run.status.value,
                "error": run.error,
            }
        )
    return [{**e, "rebuilt": True} for e in events]
