"""``bcce models``: the Anthropic models a Bedrock region offers, and which one to use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bcce.models import ModelEntry

# A listing answers at once; retry throttling a little, never hang without network.
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 10
MAX_ATTEMPTS = 3

region_option = click.option(
    "--region",
    metavar="REGION",
    default=None,
    help="AWS region (default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
access_option = click.option(
    "--check-access",
    is_flag=True,
    help="Ask Bedrock whether this account may invoke each model (one call a model; "
    "needs bedrock:GetFoundationModelAvailability).",
)


@click.group("models")
def group() -> None:
    """Anthropic models and inference profiles on Amazon Bedrock."""


def _entries(region: str | None, check_access: bool) -> tuple[str, list[ModelEntry]]:
    from bcce import aws, models

    name = aws.region(region)
    try:
        client = aws.client(
            "bedrock",
            region_name=name,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            max_attempts=MAX_ATTEMPTS,
        )
    except Exception as exc:  # botocore: invalid region name, unknown profile
        why = models.aws_problem(exc, models.LIST_ACTIONS)
        raise models.BedrockUnavailable(name, *why) from None
    entries = models.list_entries(client)
    if check_access:
        entries, problem = models.check_access(client, entries)
        if problem:
            click.echo(f"bcce: {problem} (invocable left unknown)", err=True)
    return name, entries


def _yes_no(value: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "?"}[value]


@group.command("list")
@region_option
@json_option
@access_option
def list_models(region: str | None, as_json: bool, check_access: bool) -> None:
    """List the Anthropic models and inference profiles available in the region."""
    name, entries = _entries(region, check_access)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Anthropic models on Bedrock in {name}")
    for column in ("id", "name", "kind", "status", "how to invoke", "invocable"):
        table.add_column(column, overflow="fold")
    for e in entries:
        status = e.status if e.status == "ACTIVE" else f"[yellow]{escape(e.status)}[/]"
        table.add_row(
            escape(e.id),
            escape(e.name),
            e.kind,
            status,
            escape(e.invocation()),
            _yes_no(e.invocable),
        )
    console = Console(highlight=False)
    console.print(table)
    if not entries:
        console.print(f"no Anthropic models or inference profiles listed in {name}")
    elif not check_access:
        console.print("invocable ? = not checked: pass --check-access to ask Bedrock")


@group.command("recommend")
@click.option(
    "--use-case",
    type=click.Choice(["coding", "review", "fast"]),
    required=True,
    help="coding: agent steps that edit code; review: reading diffs and designs; "
    "fast: quick, cheap prompt steps.",
)
@region_option
@json_option
@access_option
def recommend(use_case: str, region: str | None, as_json: bool, check_access: bool) -> None:
    """Pick the model id to use for a use case from what the region offers (exit 1 if none)."""
    from bcce.models import recommend as pick

    name, entries = _entries(region, check_access)
    chosen = pick(entries, use_case, name)
    if as_json:
        click.echo(json.dumps(chosen.to_json(), indent=2))
        return
    click.echo(chosen.pick.id)
    click.echo("")
    click.echo(chosen.reason)
    if chosen.alternatives:
        click.echo("")
        click.echo("alternatives:")
        for alt in chosen.alternatives:
            click.echo(f"  {alt.id}  ({alt.name}, {alt.kind})")
