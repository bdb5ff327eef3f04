"""Tests for bcce.costs and ``bcce cost report`` (embedded mode, run-state.json on disk)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bcce.artifacts import LocalArtifactStore
from bcce.cli import cli
from bcce.costs import (
    NONE,
    CostReport,
    RunWithSteps,
    parse_since,
    report,
    run_cost,
    since_filter,
)
from bcce.errors import UsageError
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAY = 86400.0
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"


def usage(inp: int = 0, out: int = 0, read: int = 0, write: int = 0) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


def step(
    step_id: str,
    model: str | None = None,
    cost: float = 0.0,
    tokens: dict[str, int] | None = None,
    attempts: int = 1,
    kind: str = "agent",
) -> StepRecord:
    return StepRecord(
        id=step_id,
        type=kind,
        queue="agent" if kind == "agent" else "command",
        status=StepStatus.SUCCEEDED if attempts else StepStatus.PENDING,
        attempts=attempts,
        model=model,
        usage=tokens or {},
        cost_usd=cost,
    )


def run(
    run_id: str,
    steps: list[StepRecord],
    *,
    workflow: str = "review",
    created_at: float = NOV_1,
    labels: dict[str, str] | None = None,
    cost: float | None = None,
    runs_dir: Path = Path(".bcce_runs"),
) -> RunWithSteps:
    record = RunRecord(
        id=run_id,
        workflow=workflow,
        status=RunStatus.SUCCEEDED,
        created_at=created_at,
        workspace="/ws",
        run_dir=str(runs_dir / run_id),
        step_ids=[s.id for s in steps],
        cost_usd=sum(s.cost_usd for s in steps) if cost is None else cost,
        labels=labels or {},
    )
    return record, steps


def sample() -> list[RunWithSteps]:
    """Four runs over two teams, two workflows and two models, on Nov 1, 2, 3 and 4."""
    return [
        run(
            "r1",
            [
                step("plan", SONNET, 0.50, usage(1000, 200, 5000, 300)),
                step("test", kind="cmd"),
                step("fix", HAIKU, 0.10, usage(400, 100)),
            ],
            labels={"team": "platform", "project": "atlas"},
        ),
        run(
            "r2",
            [step("plan", SONNET, 1.25, usage(2000, 400, 0, 1000))],
            labels={"team": "platform"},
            created_at=NOV_1 + DAY,
        ),
        run(
            "r3",
            [step("plan", HAIKU, 0.05, usage(100, 50)), step("ship", kind="cmd", attempts=0)],
            workflow="release",
            labels={"team": "payments", "project": "atlas"},
            created_at=NOV_1 + 2 * DAY,
        ),
        run("r4", [step("lint", kind="cmd")], workflow="release", created_at=NOV_1 + 3 * DAY),
    ]


def groups(result: CostReport) -> dict[str, dict[str, Any]]:
    return {g["key"]: g for g in result.to_json()["groups"]}


# Aggregation


def test_by_team_counts_runs_steps_tokens_and_cost_with_none_for_unlabelled_runs() -> None:
    result = report(sample(), "team")
    assert [g.key for g in result.groups] == ["platform", "payments", NONE]  # costliest first
    lines = groups(result)
    assert lines["platform"] == {
        "key": "platform",
        "runs": 2,
        "steps": 4,
        "input_tokens": 3400,
        "output_tokens": 700,
        "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 1300,
        "cost_usd": 1.85,
    }
    assert lines["payments"]["steps"] == 1  # the step that never ran is not counted
    assert lines[NONE]["runs"] == 1 and lines[NONE]["cost_usd"] == 0.0
    total = result.to_json()["total"]
    assert total["runs"] == 4 and total["steps"] == 6
    assert total["cost_usd"] == pytest.approx(1.90)
    assert total["input_tokens"] == 3500


def test_by_project_and_by_workflow() -> None:
    projects = groups(report(sample(), "project"))
    assert set(projects) == {"atlas", NONE}
    assert projects["atlas"]["runs"] == 2
    assert projects["atlas"]["cost_usd"] == pytest.approx(0.65)
    assert projects[NONE]["runs"] == 2
    workflows = groups(report(sample(), "workflow"))
    assert workflows["review"]["runs"] == 2
    assert workflows["review"]["cost_usd"] == pytest.approx(1.85)
    assert workflows["release"]["runs"] == 2 and workflows["release"]["steps"] == 2


def test_by_model_sums_step_costs_and_puts_steps_without_a_model_in_none() -> None:
    models = groups(report(sample(), "model"))
    assert set(models) == {SONNET, HAIKU, NONE}
    assert models[SONNET]["runs"] == 2 and models[SONNET]["steps"] == 2
    assert models[SONNET]["cost_usd"] == pytest.approx(1.75)
    assert models[SONNET]["input_tokens"] == 3000
    assert models[SONNET]["cache_creation_input_tokens"] == 1300
    assert models[HAIKU]["runs"] == 2 and models[HAIKU]["cost_usd"] == pytest.approx(0.15)
    assert models[NONE] == {
        "key": NONE,
        "runs": 2,
        "steps": 2,
        **usage(),
        "cost_usd": 0.0,
    }


def test_totals_are_the_same_whatever_the_grouping() -> None:
    runs = [*sample(), run("r5", [step("a", SONNET, 0.2)], cost=0.5)]  # 0.3 beyond its steps
    totals = [
        report(runs, by).to_json()["total"] for by in ("team", "project", "workflow", "model")
    ]
    assert all(t == totals[0] for t in totals)
    assert totals[0]["cost_usd"] == pytest.approx(2.40)
    for by in ("team", "project", "workflow", "model"):
        result = report(runs, by)
        assert sum(g.cost_usd for g in result.groups) == pytest.approx(result.total.cost_usd)


def test_a_run_costs_its_record_or_its_steps_whichever_is_more() -> None:
    record, steps = run("r", [step("a", SONNET, 0.4), step("b", HAIKU, 0.1)], cost=0.0)
    assert run_cost(record, steps) == pytest.approx(0.5)  # record not rolled up yet
    record, steps = run("r", [step("a", SONNET, 0.4)], cost=0.7)
    assert run_cost(record, steps) == pytest.approx(0.7)
    models = groups(report([(record, steps)], "model"))
    assert models[SONNET]["cost_usd"] == pytest.approx(0.4)
    assert models[NONE] == {"key": NONE, "runs": 1, "steps": 0, **usage(), "cost_usd": 0.3}


def test_no_runs_is_an_empty_report_with_a_zero_total() -> None:
    result = report([], "team")
    assert result.to_json() == {
        "by": "team",
        "since": None,
        "groups": [],
        "total": {"runs": 0, "steps": 0, **usage(), "cost_usd": 0.0},
    }


def test_an_unknown_grouping_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot group runs by 'colour'"):
        report(sample(), "colour")


# Since


def test_since_keeps_runs_created_at_or_after_it() -> None:
    since = datetime(2026, 11, 2, tzinfo=UTC)
    assert [r.id for r, _ in since_filter(sample(), since)] == ["r2", "r3", "r4"]
    assert [r.id for r, _ in since_filter(sample(), None)] == ["r1", "r2", "r3", "r4"]
    result = report(sample(), "team", since)
    assert result.total.runs == 3
    assert result.to_json()["since"] == "2026-11-02T00:00:00+00:00"


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("24h", NOW - timedelta(hours=24)),
        ("90m", NOW - timedelta(minutes=90)),
        ("30s", NOW - timedelta(seconds=30)),
        ("2w", NOW - timedelta(days=14)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T12:00", datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),
        ("2026-11-01T12:00:30Z", datetime(2026, 11, 1, 12, 0, 30, tzinfo=UTC)),
        (
            "2026-11-01T12:00+01:00",
            datetime(2026, 11, 1, 12, 0, tzinfo=timezone(timedelta(hours=1))),
        ),
    ],
)
def test_parse_since_reads_dates_datetimes_and_durations(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "7", "7y", "-1d", "2026-13-01", ""])
def test_parse_since_rejects_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_since(text, NOW)
    assert str(caught.value).startswith(f"--since {text!r}: expected a date")
    assert "\n" not in str(caught.value)


# The CLI, embedded: runs read from run-state.json as bcce mirrors them


@pytest.fixture
def runs_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Embedded mode in an empty folder, with the sample runs mirrored to .bcce_runs/."""
    for name in list(os.environ):
        if name.startswith("BCCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ".bcce_runs"
    for record, steps in sample():
        LocalArtifactStore(folder / record.id).mirror(record, steps)
    return folder


def bcce(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="bcce")


def test_cost_report_json_summarises_the_runs_on_disk(runs_dir: Path) -> None:
    result = bcce("cost", "report", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data == report(sample(), "team").to_json()
    assert data["by"] == "team" and data["since"] is None
    assert data["total"]["cost_usd"] == pytest.approx(1.90)


@pytest.mark.parametrize("by", ["team", "project", "workflow", "model"])
def test_cost_report_groups_as_asked(runs_dir: Path, by: str) -> None:
    result = bcce("cost", "report", "--by", by, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == report(sample(), by).to_json()


def test_cost_report_since_filters_runs(runs_dir: Path) -> None:
    result = bcce("cost", "report", "--since", "2026-11-03", "--by", "workflow", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["since"] == "2026-11-03T00:00:00+00:00"
    assert data["total"]["runs"] == 2
    assert [g["key"] for g in data["groups"]] == ["release"]


def test_cost_report_since_a_duration_counts_back_from_now(runs_dir: Path) -> None:
    LocalArtifactStore(runs_dir / "new").mirror(
        *run(
            "new",
            [step("a", SONNET, 2.0)],
            created_at=(datetime.now(UTC) - timedelta(hours=1)).timestamp(),
        )
    )
    data = json.loads(bcce("cost", "report", "--since", "2h", "--json").stdout)
    assert data["total"]["runs"] == 1
    assert data["total"]["cost_usd"] == pytest.approx(2.0)


def test_cost_report_table_shows_each_group_and_the_total(runs_dir: Path) -> None:
    result = bcce("cost", "report", "--by", "model")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "cost by model" in out
    for text in (SONNET, HAIKU, NONE, "total", "1.7500", "1.9000", "5,000", "3,500"):
        assert text in out, text


def test_cost_report_limit_counts_the_newest_runs_and_says_so(runs_dir: Path) -> None:
    result = bcce("cost", "report", "--limit", "2", "--by", "workflow", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"]["runs"] == 2
    assert [g["key"] for g in data["groups"]] == ["release"]  # r3, r4: the newest two
    assert result.stderr == (
        "bcce: counted the newest 2 runs only, older ones match too: "
        "raise --limit or narrow --since\n"
    )
    quiet = bcce("cost", "report", "--limit", "2", "--since", "2026-11-03", "--json")
    assert quiet.stderr == ""


def test_cost_report_skips_an_unreadable_run_state_with_a_warning(runs_dir: Path) -> None:
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "run-state.json").write_text("{not json")
    result = bcce("cost", "report", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"]["runs"] == 4
    assert result.stderr.startswith("bcce: skipped ")
    assert "broken/run-state.json: unreadable (" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_cost_report_reads_the_runs_dir_setting(
    runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    LocalArtifactStore(elsewhere / "x").mirror(*run("x", [step("a", HAIKU, 0.25)]))
    monkeypatch.setenv("BCCE_RUNS_DIR", str(elsewhere))
    data = json.loads(bcce("cost", "report", "--json").stdout)
    assert data["total"]["runs"] == 1 and data["total"]["cost_usd"] == 0.25


def test_cost_report_with_no_runs_prints_a_zero_total(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BCCE_BROKER_URL", raising=False)
    monkeypatch.delenv("BCCE_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    result = bcce("cost", "report", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"]["runs"] == 0


def test_cost_report_bad_since_exits_2_with_one_line(runs_dir: Path) -> None:
    result = bcce("cost", "report", "--since", "last tuesday")
    assert result.exit_code == 2
    assert result.stderr == (
        "bcce: --since 'last tuesday': expected a date (2026-11-01), a date and time "
        "(2026-11-01T12:00, UTC unless given) or a duration (90m, 24h, 7d, 2w)\n"
    )


def test_cost_is_a_command_of_bcce() -> None:
    result = bcce("--help")
    assert result.exit_code == 0
    assert "cost" in result.stdout
    assert "--by [team|project|workflow|model]" in bcce("cost", "report", "--help").stdout


# The CLI, distributed: runs read from the run store (here the in-process one)


def test_cost_report_with_a_broker_reads_the_run_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bcce.state import RunStore

    for name in list(os.environ):
        if name.startswith("BCCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BCCE_BROKER_URL", "redis://127.0.0.1:1/0")  # never connected to
    monkeypatch.setenv("BCCE_STATE_URL", "memory://")
    store = RunStore.from_url("memory://", 3600)
    store.client.flushall()
    for record, steps in sample():
        store.create(record, {}, steps)
    result = bcce("cost", "report", "--by", "model", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == report(sample(), "model").to_json()
    limited = bcce("cost", "report", "--limit", "3", "--json")
    assert json.loads(limited.stdout)["total"]["runs"] == 3
    assert "counted the newest 3 runs only" in limited.stderr
    since = bcce("cost", "report", "--limit", "3", "--since", "2026-11-02", "--json")
    assert json.loads(since.stdout)["total"]["runs"] == 3
    assert since.stderr == ""
    store.client.flushall()


def test_the_cli_offers_every_grouping_of_bcce_costs() -> None:
    from bcce.cli.cost import BY
    from bcce.costs import GROUP_BY

    assert BY == GROUP_BY
