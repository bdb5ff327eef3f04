"""The ``bcce`` command line: one module a command group.

Handled conditions end as one line on stderr and the exit code of their error
(see ``bcce.errors``); only an unexpected crash prints a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from bcce import __version__
from bcce.errors import BcceError


class Cli(click.Group):
    """A click group that turns BcceError into its one-line message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report bcce errors without a traceback."""
        try:
            return super().invoke(ctx)
        except BcceError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"bcce: {line}", err=True)
            ctx.exit(int(exc.exit_code))


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bcce")
def cli() -> None:
    """Run AI coding agents as governed, auditable Celery workflows."""


def _register() -> None:
    from bcce.cli import (
        artifacts,
        audit,
        config,
        control,
        cost,
        diagram,
        doctor,
        flower,
        keys,
        logs,
        models,
        plugin,
        policy,
        reconcile,
        worker,
        workflow,
    )

    workflow.group.add_command(control.resume)
    workflow.group.add_command(control.cancel)
    workflow.group.add_command(control.diff)
    workflow.group.add_command(control.approve)
    workflow.group.add_command(control.reject)
    workflow.group.add_command(artifacts.artifacts)
    workflow.group.add_command(artifacts.checkout)
    workflow.group.add_command(reconcile.reconcile)
    workflow.group.add_command(logs.logs)
    workflow.group.add_command(diagram.command)
    cli.add_command(workflow.group)
    cli.add_command(worker.command)
    cli.add_command(flower.command)
    cli.add_command(plugin.group)
    cli.add_command(keys.group)
    cli.add_command(cost.group)
    cli.add_command(models.group)
    cli.add_command(doctor.command)
    cli.add_command(audit.group)
    cli.add_command(policy.group)
    cli.add_command(config.group)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bcce")
