"""``bcce audit``: show a run's audit log, and check that nobody has altered it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bcce.cli.options import broker_option, settings_for
from bcce.cli.output import Reporter
from bcce.errors import NotFound


@click.group("audit")
def group() -> None:
    """A run's tamper-evident audit log."""


def _log(broker: str | None, run_id: str, file: Path | None) -> tuple[list[str], dict[str, Any]]:
    """The records (from --file, the run store, or the run's folder) and the run's head."""
    from bcce.artifacts import store_for
    from bcce.runs import load_run
    from bcce.state import RunStore

    settings = settings_for(broker)
    if file is not None:
        return file.read_text("utf-8").splitlines(), {}
    run, _ = load_run(settings, run_id)
    if not settings.embedded:
        store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
        return store.audit_lines(run_id), {}
    artifacts = store_for(run, settings)
    artifacts.pull()
    state = json.loads((artifacts.run_dir / "run-state.json").read_text("utf-8"))
    return artifacts.read_audit(), dict(state.get("audit") or {})


@group.command("verify")
@click.argument("run_id")
@click.option(
    "--file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Check this copy of the log (e.g. an audit.jsonl kept elsewhere) instead.",
)
@broker_option
def verify(run_id: str, file: Path | None, broker: str | None) -> None:
    """Check every record's place, chain and signature; exit 1 at the first that is wrong."""
    from bcce.audit import trusted_keys
    from bcce.audit import verify as check

    settings = settings_for(broker)
    lines, head = _log(broker, run_id, file)
    if not lines:
        raise NotFound(f"run {run_id} has no audit log")
    trusted = trusted_keys(settings) or None
    verdict = check(lines, run_id, trusted, head)
    keys = ", ".join(f"{k} ({n})" for k, n in sorted(verdict.keys.items()))
    if verdict.problem:
        click.echo(f"run {run_id}: audit log NOT intact at record {verdict.at}: {verdict.problem}")
        raise SystemExit(1)
    if verdict.unknown_keys:
        click.echo(
            f"run {run_id}: audit log chained but signed by keys not in "
            f"BCCE_AUDIT_PUBLIC_KEYS: {', '.join(verdict.unknown_keys)}"
        )
        raise SystemExit(1)
    vouched = "trusted keys" if trusted else "keys the records carry (no BCCE_AUDIT_PUBLIC_KEYS)"
    click.echo(
        f"run {run_id}: audit log intact: {verdict.records} records, signed by {keys}, "
        f"checked against {vouched}"
    )


@group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="The records as JSON lines.")
@broker_option
def show(run_id: str, as_json: bool, broker: str | None) -> None:
    """Print a run's audit records, oldest first."""
    from datetime import UTC, datetime

    lines, _ = _log(broker, run_id, None)
    if as_json:
        for line in lines:
            click.echo(line)
        return
    reporter = Reporter(False)
    for line in lines:
        record = json.loads(line)
        data = {k: v for k, v in record["data"].items() if k not in ("type", "time")}
        when = datetime.fromtimestamp(record["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        detail = " ".join(f"{k}={json.dumps(v)}" for k, v in data.items() if v is not None)
        reporter.console.print(
            f"{record['seq']:>4} {when} {record['kind']:<24} {detail}",
            markup=False,
            highlight=False,
        )
