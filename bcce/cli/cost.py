"""``bcce cost``: what recorded runs spent, by team, project, workflow or model."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click

from bcce.cli.options import broker_option, settings_for
from bcce.cli.output import Reporter

if TYPE_CHECKING:
    from bcce.costs import CostLine, CostReport, RunWithSteps
    from bcce.settings import Settings

BY = ("team", "project", "workflow", "model")  # bcce.costs.GROUP_BY, without importing it


@click.group("cost")
def group() -> None:
    """Report what runs cost."""


@group.command("report")
@click.option(
    "--since",
    metavar="DATE|DURATION",
    default=None,
    help="Only runs created since: 2026-11-01, 2026-11-01T12:00 (UTC unless given), "
    "or a duration back from now: 90m, 24h, 7d.",
)
@click.option(
    "--by",
    type=click.Choice(BY),
    default="team",
    show_default=True,
    help="Group by the team or project label, the workflow, or each step's model.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Count at most the newest N runs.",
)
@broker_option
def report(since: str | None, by: str, as_json: bool, limit: int, broker: str | None) -> None:
    """Summarise the runs recorded: embedded runs on disk, or the run store with a broker."""
    from bcce import costs

    settings = settings_for(broker)
    cutoff = None if since is None else costs.parse_since(since)
    if settings.embedded:
        runs, more = _on_disk(settings, limit, cutoff)
    else:
        runs, more = _in_store(settings, limit, cutoff)
    if more:
        click.echo(
            f"bcce: counted the newest {limit} runs only, older ones match too: "
            "raise --limit or narrow --since",
            err=True,
        )
    result = costs.report(runs, by, cutoff)
    reporter = Reporter(as_json)
    if as_json:
        reporter.json(result.to_json())
    else:
        _table(reporter, result)


def _on_disk(
    settings: Settings, limit: int, since: datetime | None
) -> tuple[list[RunWithSteps], bool]:
    """Embedded runs from the run-state.json files under the runs folder, newest first."""
    from bcce.artifacts import RUN_STATE, LocalArtifactStore
    from bcce.costs import since_filter

    found: list[RunWithSteps] = []
    for path in sorted(settings.runs_dir.glob(f"*/{RUN_STATE}")):
        try:
            found.append(LocalArtifactStore(path.parent).read_state())
        except (OSError, ValueError) as exc:  # JSON and validation errors are ValueErrors
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            click.echo(f"bcce: skipped {path}: unreadable ({first})", err=True)
    found = since_filter(found, since)
    found.sort(key=lambda pair: pair[0].created_at, reverse=True)
    return found[:limit], len(found) > limit


def _in_store(
    settings: Settings, limit: int, since: datetime | None
) -> tuple[list[RunWithSteps], bool]:
    """Distributed runs from the run store (those not yet expired), newest first."""
    from bcce.cli.waiting import open_store
    from bcce.errors import NotFound

    store = open_store(settings)
    cutoff = None if since is None else since.timestamp()
    records = [r for r in store.list_runs(limit + 1) if cutoff is None or r.created_at >= cutoff]
    found: list[RunWithSteps] = []
    for record in records[:limit]:
        try:
            found.append(store.run_with_steps(record.id))
        except NotFound:  # expired since it was listed
            continue
    return found, len(records) > limit


def _table(reporter: Reporter, result: CostReport) -> None:
    from rich.markup import escape
    from rich.measure import Measurement
    from rich.table import Table

    def measure(table: Table) -> Measurement:
        unbounded = reporter.console.options.update_width(10_000)
        return Measurement.get(reporter.console, unbounded, table)

    since = f" since {result.since:%Y-%m-%d %H:%M %Z}" if result.since else ""
    table = Table(title=f"cost by {result.by}{since}")
    table.add_column(result.by)
    for column in ("runs", "steps", "input", "output", "cache read", "cache write", "USD"):
        table.add_column(column, justify="right", no_wrap=True)
    for i, line in enumerate(result.groups):
        table.add_row(escape(line.key), *_figures(line), end_section=i == len(result.groups) - 1)
    table.add_row("total", *_figures(result.total), style="bold")
    console = reporter.console
    # Not a terminal (a CI log, a pipe): as wide as the table, so model ids stay whole.
    if not console.is_terminal:
        console.width = max(console.width, measure(table).maximum)
    console.print(table)


def _figures(line: CostLine) -> list[str]:
    from bcce.pricing import USAGE_KEYS

    tokens = [f"{line.usage.get(key, 0):,}" for key in USAGE_KEYS]
    return [str(line.runs), str(line.steps), *tokens, f"{line.cost_usd:,.4f}"]
