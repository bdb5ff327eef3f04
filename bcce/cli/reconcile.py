"""``bcce workflow reconcile``: find runs whose next message was lost, and move them on."""

from __future__ import annotations

import json

import click

from bcce.cli.options import broker_option, settings_for
from bcce.errors import UsageError


@click.command("reconcile")
@click.option(
    "--older-than",
    "bound",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Only runs quiet this long (default BCCE_RECONCILE_AFTER_SECONDS).",
)
@click.option(
    "--action",
    type=click.Choice(["requeue", "fail", "none"]),
    default="requeue",
    show_default=True,
    help="Re-enqueue the orphan's step, fail its run, or only list orphans.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per orphan.")
@broker_option
def reconcile(bound: float | None, action: str, as_json: bool, broker: str | None) -> None:
    """Find live runs with no message queued or held by a worker (a lost message) and
    re-enqueue their step or fail them; a policy-pool worker does this periodically too."""
    from bcce import reconcile as rec
    from bcce.celery_app import make_app
    from bcce.cli.waiting import open_store
    from bcce.steptypes import queues, registry

    settings = settings_for(broker)
    if settings.embedded:
        raise UsageError("reconcile needs a broker (BCCE_BROKER_URL or --broker)")
    store = open_store(settings)
    types = registry()
    found = rec.find(store, queues(types), bound or settings.reconcile_after_seconds)
    app = make_app(settings, types) if action != "none" and found else None
    for orphan in found:
        done = rec.repair(app, store, orphan, action) if app is not None else orphan
        if as_json:
            click.echo(json.dumps(done.__dict__))
        else:
            what = done.action or "orphaned (not changed)"
            click.echo(
                f"run {done.run_id}: step {done.step_id} {what} "
                f"(no message for it, quiet {done.quiet_seconds:.0f}s)"
            )
    if not found and not as_json:
        click.echo("no orphaned runs")
