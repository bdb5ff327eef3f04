"""``bcce workflow artifacts`` and ``checkout``: what a run left, and its workspace again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bcce.cli.options import broker_option, settings_for
from bcce.errors import UsageError


@click.command("artifacts")
@click.argument("run_id")
@click.argument("step_id", required=False)
@click.option("--get", "name", default=None, metavar="NAME", help="Print this artifact.")
@click.option("--json", "as_json", is_flag=True, help="List as JSON.")
@broker_option
def artifacts(
    run_id: str, step_id: str | None, name: str | None, as_json: bool, broker: str | None
) -> None:
    """List a run's artifacts (or one step's), or print one with --get NAME.

    Without STEP, --get reads the run's own files (run-state.json, workflow.json,
    workspace.patch).
    """
    from bcce.artifacts import store_for
    from bcce.runs import load_run

    settings = settings_for(broker)
    run, _ = load_run(settings, run_id)
    if step_id is not None and step_id not in run.step_ids:
        raise UsageError(f"run {run_id} has no step {step_id!r}; steps: {', '.join(run.step_ids)}")
    store = store_for(run, settings)
    store.pull()
    if name is not None:
        try:
            data = store.read_bytes(step_id, name)
        except (OSError, ValueError) as exc:
            where = f"step {step_id}" if step_id else "the run"
            raise UsageError(
                f"{where} of run {run_id} has no artifact {name!r} in {run.run_dir} ({exc}): "
                f"list them with `bcce workflow artifacts {run_id}"
                + (f" {step_id}`" if step_id else "`")
            ) from None
        sys.stdout.buffer.write(data)
        return
    listing = {sid: store.sizes(sid) for sid in ([step_id] if step_id else [None, *run.step_ids])}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_id": run_id,
                    "run_dir": run.run_dir,
                    "artifacts": {sid or "": sizes for sid, sizes in listing.items()},
                },
                indent=2,
            )
        )
        return
    for sid, sizes in listing.items():
        for artifact, size in sizes.items():
            click.echo(f"{sid + '/' if sid else ''}{artifact}\t{size}")


@click.command("checkout")
@click.argument("run_id")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--step",
    "step_id",
    default=None,
    metavar="STEP",
    help="The workspace as it was after this step (default: after the last step that ran).",
)
@broker_option
def checkout(run_id: str, directory: Path, step_id: str | None, broker: str | None) -> None:
    """Materialise a run's workspace in DIRECTORY: a clone of its repository at the run's
    base commit, with the working tree as the run left it (or as it was after --step)."""
    from bcce.artifacts import store_for
    from bcce.clones import checkout as materialise
    from bcce.runs import load_run
    from bcce.workspace import WorkspaceError

    settings = settings_for(broker)
    run, steps = load_run(settings, run_id)
    store = store_for(run, settings)
    store.pull()
    try:
        tree = materialise(run, steps, step_id, directory.resolve(), store.run_dir)
    except WorkspaceError as exc:
        raise UsageError(f"cannot check out run {run_id}: {exc}") from None
    after = f"after step {step_id}" if step_id else "as the run left it"
    click.echo(f"{directory}: run {run_id}'s workspace {after} (tree {tree[:12]})")
