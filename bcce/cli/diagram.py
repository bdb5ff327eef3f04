"""``bcce workflow diagram``: a workflow's chain, or a run's with step statuses, as a diagram."""

from __future__ import annotations

from pathlib import Path

import click

from bcce.cli.options import broker_option, parse_vars, settings_for, vars_option
from bcce.diagram import FORMATS, RENDERERS, Chart, Drawable, format_for
from bcce.errors import NotFound, UsageError
from bcce.records import RunRecord, StepRecord
from bcce.settings import Settings


@click.command("diagram")
@click.argument("target", metavar="FILE|RUN_ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Diagram language [default: from the --output extension, else mermaid].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Write here (.mmd/.mermaid or .dot/.gv) instead of standard output.",
)
@vars_option
@broker_option
def command(
    target: str,
    fmt: str | None,
    output: Path | None,
    variables: tuple[str, ...],
    broker: str | None,
) -> None:
    """Draw the steps, pools and policy gates of a workflow FILE or of the run RUN_ID.

    A run's diagram shows each step's status. Render the text with `mmdc` (Mermaid) or
    `dot -Tpng` (Graphviz): bcce writes text, never images.
    """
    language = format_for(output, fmt)
    settings = settings_for(broker)
    statuses: dict[str, str] | None = None
    if Path(target).is_file():
        drawable = _from_file(Path(target), settings, variables)
    else:
        run, steps = _run(settings, _run_id(target))
        drawable = Chart.of(run.workflow, steps)
        statuses = {s.id: s.status.value for s in steps}
    text = RENDERERS[language](drawable, statuses)
    if output is None:
        click.echo(text, nl=False)
        return
    from bcce.artifacts import write_atomic

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output, text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(str(output))


def _from_file(path: Path, settings: Settings, variables: tuple[str, ...]) -> Drawable:
    from bcce import policy
    from bcce.compiler import compile_plan
    from bcce.loader import load_workflow
    from bcce.steptypes import registry

    types = registry()
    workflow = load_workflow(
        path,
        types,
        variables=parse_vars(variables),
        run_id="RUN_ID",
        max_bytes=settings.max_workflow_bytes,
    )
    return compile_plan(workflow, types, policy.Limits.of(settings), "RUN_ID")


def _run_id(target: str) -> str:
    """target as a run id, unless it can only have meant a workflow file."""
    if Path(target).is_dir():
        raise UsageError(f"{target} is a directory: give a workflow file or a run id")
    if Path(target).suffix or "/" in target or "\\" in target:
        raise NotFound(f"no workflow file {target} (nor is it a run id)")
    return target


def _run(settings: Settings, run_id: str) -> tuple[RunRecord, list[StepRecord]]:
    """The run and its steps, from the run store, or from run-state.json in embedded mode."""
    from bcce.runs import load_run

    return load_run(settings, run_id)
