"""How runs are shown: styled lines on a terminal, plain lines in CI, JSON lines on request."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bcce.compiler import Plan
from bcce.records import RunRecord, StepRecord

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "denied": "magenta",
    "cancelled": "yellow",
    "retrying": "yellow",
    "running": "cyan",
    "allowed": "cyan",
}


STATUS_COLUMNS = ("step", "type", "queue", "status", "attempts", "exit", "seconds", "cost", "error")


class Reporter:
    """Prints run progress; one instance per command."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # rich drops styles by itself when stdout is not a terminal, so CI logs stay plain.
        self.console = Console(highlight=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        """One JSON document on its own line."""
        sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")
        sys.stdout.flush()

    def line(self, markup: str) -> None:
        """One line of rich markup (plain text when not a terminal)."""
        self.console.print(markup)

    def submitted(self, run: RunRecord, mode: str) -> None:
        """The run was enqueued."""
        if self.as_json:
            self.json({"type": "run.submitted", "run_id": run.id, "run_dir": run.run_dir})
            return
        self.line(
            f"run [bold]{run.id}[/] ({escape(run.workflow)}, {len(run.step_ids)} steps, "
            f"{mode}) artifacts in {escape(run.run_dir)}"
        )

    def resumed(self, run: RunRecord, step: str) -> None:
        """The run was resumed."""
        if self.as_json:
            self.json({"type": "run.resumed", "run_id": run.id, "step": step})
            return
        self.line(
            f"run [bold]{run.id}[/] ({escape(run.workflow)}) resumed from step {step}, "
            f"artifacts in {escape(run.run_dir)}"
        )

    def event(self, event: dict[str, Any]) -> None:
        """One event of the run's stream."""
        if self.as_json:
            self.json(event)
            return
        kind, step = event.get("type"), escape(str(event.get("step", "")))
        if kind == "step.started":
            self.line(
                f"  [cyan]{step}[/] started (attempt {event.get('attempt')}, "
                f"{escape(str(event.get('worker', '')))})"
            )
        elif kind in ("step.finished", "step.retrying"):
            status = str(event.get("status"))
            tail = f" (exit {event['exit_code']})" if event.get("exit_code") is not None else ""
            error = f": {escape(str(event['error']))}" if event.get("error") else ""
            then = ""
            if kind == "step.retrying":
                then = ", will retry"
            elif event.get("continued"):
                then = ", continuing (on_error: continue)"
            self.line(
                f"  [{_style(status)}]{step} {status}[/] in "
                f"{event.get('duration_seconds')}s{tail}{error}{then}"
            )
        elif kind == "step.denied":
            self.line(
                f"  [magenta]{step} denied[/] by {event.get('rule')}: "
                f"{escape(str(event.get('reason')))}"
            )
        elif kind == "step.redelivered":
            self.line(f"  {step} redelivered after it finished; not run again")
        elif kind == "step.awaiting_approval":
            self.line(
                f"  [yellow]{step} awaits approval[/]: {event.get('files')} files, "
                f"+/-{event.get('lines')} lines, sha256 {str(event.get('sha256'))[:12]}"
            )
        elif kind in ("step.approved", "step.rejected"):
            verb = kind.removeprefix("step.")
            note = event.get("comment") or event.get("reason")
            self.line(
                f"  {step} {verb} by {escape(str(event.get('by')))}"
                + (f": {escape(str(note))}" if note else "")
            )
        elif kind == "step.tool_denied":
            self.line(
                f"  [magenta]{step}: {escape(str(event.get('tool')))} denied[/]: "
                f"{escape(str(event.get('reason')))}"
            )

    def finished(self, run: RunRecord, steps: list[StepRecord], summary: dict[str, Any]) -> None:
        """The run ended."""
        if self.as_json:
            self.json({"type": "run.summary", **summary})
            return
        status = run.status.value
        took = f" in {summary['duration_seconds']}s" if summary["duration_seconds"] else ""
        cost = f", ${run.cost_usd:.4f}" if run.cost_usd else ""
        error = f": {escape(run.error)}" if run.error else ""
        self.line(
            f"run {run.id} [{_style(status)}]{status}[/]{took}{cost}{error} "
            f"(exit {summary['exit_code']})"
        )

    def plan(self, plan: Plan) -> None:
        """``--dry-run``: the compiled plan."""
        if self.as_json:
            self.json(plan.to_json())
            return
        table = Table(title=f"{plan.workflow}: {len(plan.steps)} steps, run id {plan.run_id}")
        for column in ("step", "type", "task", "queue", "timeout", "cmd_allowlist", "runs"):
            table.add_column(column)
        for s in plan.steps:
            allow = s.effective.cmd_allowlist
            table.add_row(
                s.id,
                s.type,
                s.task,
                s.queue,
                f"{s.effective.timeout_seconds}s",
                "any" if allow is None else ", ".join(allow) or "(none)",
                "yes" if s.runnable else "not in this version",
            )
        self.console.print(table)
        self.line(
            f"each step is gated by bcce.policy.check on queue 'policy'; "
            f"queues needed: {', '.join(plan.queues)}"
        )

    def status(self, run: RunRecord, steps: list[StepRecord], summary: dict[str, Any]) -> None:
        """``bcce workflow status``."""
        if self.as_json:
            self.json(summary)
            return
        self.line(
            f"run [bold]{run.id}[/] {escape(run.workflow)}: "
            f"[{_style(run.status.value)}]{run.status.value}[/]"
            + (f", ${run.cost_usd:.4f}" if run.cost_usd else "")
            + (f" ({escape(run.error)})" if run.error else "")
        )
        table = Table()
        for column in STATUS_COLUMNS:
            table.add_column(column)
        for s in steps:
            table.add_row(
                s.id,
                s.type,
                s.queue,
                f"[{_style(s.status.value)}]{s.status.value}[/]"
                + (" (continued)" if s.continued else ""),
                str(s.attempts),
                "" if s.exit_code is None else str(s.exit_code),
                "" if s.duration_seconds is None else f"{s.duration_seconds:.2f}",
                f"${s.cost_usd:.4f}" if s.cost_usd else "",
                escape(s.error or ""),
            )
        self.console.print(table)


def _style(status: str) -> str:
    return STATUS_STYLE.get(status, "default")
