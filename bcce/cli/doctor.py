"""``bcce doctor``: check this machine's setup for running bcce workflows."""

from __future__ import annotations

import json

import click

from bcce.cli.options import broker_option

STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok": ..., "checks": [...]}.')
@click.option(
    "--model",
    metavar="ID",
    default=None,
    help="Also check this model or inference profile id is offered and invocable.",
)
@click.option(
    "--region",
    metavar="REGION",
    default=None,
    help="AWS region for the AWS checks (default AWS_REGION, AWS_DEFAULT_REGION, us-east-1).",
)
@broker_option
def command(as_json: bool, model: str | None, region: str | None, broker: str | None) -> None:
    """Check Python, packages, settings, broker, workers, claude CLI, git and AWS.

    Each check is ok, warn or fail, with a fix; exits 1 if any check fails, else 0.
    """
    from bcce import doctor

    checks = doctor.run(doctor.Context(broker=broker, model=model, region=region))
    result = doctor.report(checks)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table()
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")
        for c in checks:
            table.add_row(
                c.name,
                f"[{STYLE[c.status]}]{c.status}[/]",
                escape(c.detail),
                escape(c.fix),
            )
        console = Console(highlight=False)
        console.print(table)
        counts = {s: sum(c.status == s for c in checks) for s in STYLE}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items()))
    if not result["ok"]:
        raise SystemExit(1)
