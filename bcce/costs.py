"""Cost reports: what recorded runs spent, grouped by team, project, workflow or model.

Pure functions over runs with their steps (as ``RunStore.run_with_steps`` and run-state.json
give them); ``bcce cost report`` reads the runs and prints what these return.

A run costs what its record says, or the sum of its steps' costs when that is more (a
record written before its steps' costs were rolled up). Grouped by model, each step's cost
goes to its model; what a run cost beyond its steps goes to ``(none)``, so the total is the
same whatever the grouping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from bcce.errors import UsageError
from bcce.pricing import USAGE_KEYS, add_usage
from bcce.records import RunRecord, StepRecord

GroupBy = Literal["team", "project", "workflow", "model"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)
NONE = "(none)"
"""The group of runs without the label, and of steps without a model."""

RunWithSteps = tuple[RunRecord, list[StepRecord]]

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class CostLine:
    """Runs, steps, tokens and USD of one group (or of all, for the total)."""

    key: str
    run_ids: set[str] = field(default_factory=set)
    steps: int = 0
    """Steps that ran (at least one attempt) or used tokens."""
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_KEYS, 0))
    cost_usd: float = 0.0

    @property
    def runs(self) -> int:
        """How many runs contributed to the group."""
        return len(self.run_ids)

    def add(self, run_id: str, steps: int, usage: dict[str, int], cost_usd: float) -> None:
        """Count one run's (or one step's) share into the group."""
        self.run_ids.add(run_id)
        self.steps += steps
        self.usage = add_usage(self.usage, usage)
        self.cost_usd += cost_usd

    def to_json(self) -> dict[str, Any]:
        """The line's figures (the standard token kinds only), cost rounded to 1e-6 USD."""
        return {
            "runs": self.runs,
            "steps": self.steps,
            **{key: self.usage.get(key, 0) for key in USAGE_KEYS},
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass
class CostReport:
    """Cost lines of one grouping, most expensive first, and their total."""

    by: str
    since: datetime | None
    groups: list[CostLine]
    total: CostLine

    def to_json(self) -> dict[str, Any]:
        """``bcce cost report --json``."""
        return {
            "by": self.by,
            "since": None if self.since is None else self.since.isoformat(),
            "groups": [{"key": g.key, **g.to_json()} for g in self.groups],
            "total": self.total.to_json(),
        }


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO date or date-time (UTC unless it says), or a duration before now.

    ``2026-11-01``, ``2026-11-01T12:00``, ``2026-11-01T12:00+01:00``; ``90m``, ``24h``,
    ``7d``, ``2w`` (and ``s``). Always returns an aware datetime.
    """
    value = text.strip()
    duration = _DURATION.match(value)
    if duration:
        seconds = int(duration[1]) * _UNIT_SECONDS[duration[2]]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: expected a date (2026-11-01), a date and time "
            "(2026-11-01T12:00, UTC unless given) or a duration (90m, 24h, 7d, 2w)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def since_filter(runs: Iterable[RunWithSteps], since: datetime | None) -> list[RunWithSteps]:
    """The runs created at or after since (all of them when since is None)."""
    if since is None:
        return list(runs)
    cutoff = since.timestamp()
    return [(run, steps) for run, steps in runs if run.created_at >= cutoff]


def step_ran(step: StepRecord) -> bool:
    """True for a step that was attempted, or that used tokens or money."""
    return step.attempts > 0 or step.cost_usd > 0 or any(step.usage.values())


def run_cost(run: RunRecord, steps: Sequence[StepRecord]) -> float:
    """What a run cost: its record's figure, or the sum of its steps' when that is more."""
    return max(run.cost_usd, sum(s.cost_usd for s in steps))


def run_usage(steps: Iterable[StepRecord]) -> dict[str, int]:
    """The tokens of all of a run's steps."""
    total: dict[str, int] = {}
    for step in steps:
        total = add_usage(total, step.usage)
    return total


def group_key(run: RunRecord, by: str) -> str:
    """The group a run falls in for a run-level grouping (team, project or workflow)."""
    if by == "workflow":
        return run.workflow or NONE
    if by in ("team", "project"):
        return run.labels.get(by) or NONE
    raise UsageError(f"cannot group runs by {by!r}; choose one of {', '.join(GROUP_BY)}")


def report(runs: Iterable[RunWithSteps], by: str, since: datetime | None = None) -> CostReport:
    """Group the runs (those since ``since``) by team, project, workflow or model."""
    if by not in GROUP_BY:
        raise UsageError(f"cannot group runs by {by!r}; choose one of {', '.join(GROUP_BY)}")
    groups: dict[str, CostLine] = {}
    total = CostLine("total")

    def line(key: str) -> CostLine:
        return groups.setdefault(key, CostLine(key))

    for run, steps in since_filter(runs, since):
        ran = [s for s in steps if step_ran(s)]
        cost = run_cost(run, steps)
        usage = run_usage(steps)
        total.add(run.id, len(ran), usage, cost)
        if by != "model":
            line(group_key(run, by)).add(run.id, len(ran), usage, cost)
            continue
        for step in ran:
            line(step.model or NONE).add(run.id, 1, step.usage, step.cost_usd)
        beyond = cost - sum(s.cost_usd for s in ran)
        if beyond > 1e-12:
            line(NONE).add(run.id, 0, {}, beyond)
    ordered = sorted(groups.values(), key=lambda g: (-g.cost_usd, g.key))
    return CostReport(by, since, ordered, total)
