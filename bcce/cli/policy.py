"""``bcce policy show``: each step's effective policy, and what would be denied, before
anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bcce.cli.options import parse_vars, settings_for, vars_option
from bcce.cli.output import Reporter


@click.group("policy")
def group() -> None:
    """The policy workflows run under (BCCE_POLICY_FILE and each step's own)."""


@group.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@vars_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per step.")
def show(file: Path, variables: tuple[str, ...], as_json: bool) -> None:
    """Print each step's effective policy (its own narrowed by the org policy) and whether
    the gate would deny it; exit 3 when a step would be denied."""
    from bcce import orgpolicy, policy
    from bcce.loader import load_workflow
    from bcce.steptypes import registry

    settings = settings_for(None)
    workflow = load_workflow(
        file, registry(), variables=parse_vars(variables), max_bytes=settings.max_workflow_bytes
    )
    org_file = orgpolicy.current(settings.policy_file)
    team = workflow.env.labels().get("team")
    org = org_file.for_team(team) if org_file else None
    limits = policy.Limits.of(settings)
    rows: list[dict[str, Any]] = []
    for step in workflow.steps:
        denied = policy.static_denial(workflow, step, limits, org)
        rows.append(
            {
                "step": step.id,
                "type": step.type,
                "policy": policy.effective(step, limits, org).to_json(),
                "denied": None if denied is None else {"rule": denied[0], "reason": denied[1]},
            }
        )
    source = str(settings.policy_file) if settings.policy_file else None
    reporter = Reporter(as_json)
    if as_json:
        for row in rows:
            reporter.json({**row, "org_policy": source, "team": team})
    else:
        _table(reporter, rows, source, team)
    if any(row["denied"] for row in rows):
        raise SystemExit(3)


def _table(reporter: Reporter, rows: list[dict[str, Any]], source: str | None, team: Any) -> None:
    from rich.table import Table

    title = f"org policy: {source or 'none (BCCE_POLICY_FILE unset)'}"
    if team:
        title += f", team {team}"
    table = Table(title=title)
    for column in ("step", "type", "timeout", "commands", "paths", "budget", "verdict"):
        table.add_column(column)
    for row in rows:
        p = row["policy"]
        commands = _list(p["cmd_allowlist"], "any")
        if p["org_cmd_allowlist"] is not None:
            commands += f"; org: {_list(p['org_cmd_allowlist'], 'none')}"
        if p["cmd_denylist"]:
            commands += f"; never: {', '.join(p['cmd_denylist'])}"
        paths = _list(p["allowed_paths"], "any")
        if p["denied_paths"]:
            paths += f"; never: {', '.join(p['denied_paths'])}"
        budget = ", ".join(
            f"{name} ${value:g}"
            for name, value in (("step", p["max_cost_usd"]), ("run", p["run_max_cost_usd"]))
            if value is not None
        )
        verdict = "allowed" if row["denied"] is None else f"DENIED: {row['denied']['reason']}"
        if row["type"] == "apply_diff" and p["approval_required"]:
            verdict += " (a person approves)"
        table.add_row(
            row["step"],
            row["type"],
            f"{p['timeout_seconds']}s",
            commands,
            paths,
            budget or "-",
            verdict,
        )
    reporter.console.print(table)


def _list(values: Any, empty: str) -> str:
    if values is None:
        return empty
    return ", ".join(values) or "(none)"
