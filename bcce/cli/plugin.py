"""``bcce plugin list``: the step types, artifact stores and event sinks installed."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from bcce.steptypes import (
    ARTIFACT_STORES_GROUP,
    EVENT_SINKS_GROUP,
    STEP_TYPES_GROUP,
    found,
    registry,
)

GROUPS = {
    STEP_TYPES_GROUP: "step type",
    ARTIFACT_STORES_GROUP: "artifact store",
    EVENT_SINKS_GROUP: "event sink",
}


@click.group("plugin")
def group() -> None:
    """Inspect installed plugins."""


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a plugin.")
def list_plugins(as_json: bool) -> None:
    """List step types (with their pool and task), artifact stores and event sinks."""
    types = registry()
    rows = []
    for group_name, kind in GROUPS.items():
        for item in found(group_name):
            row = {"kind": kind, **asdict(item)}
            step = types.get(item.name) if group_name == STEP_TYPES_GROUP else None
            if step is not None:
                row.update(
                    queue=step.queue,
                    task=step.task_name,
                    runnable=step.executor is not None,
                    description=step.description,
                )
            rows.append(row)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("kind", "name", "queue", "task", "package", "version"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["kind"],
            row["name"],
            row.get("queue", ""),
            row.get("task", ""),
            row["package"],
            row["version"],
        )
    Console().print(table)
