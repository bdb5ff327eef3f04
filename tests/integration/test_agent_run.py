"""Agent and prompt steps end to end: real Redis, real ``bcce worker`` pools (policy, agent,
command), the Claude Agent SDK driving a fake ``claude``, and a Bedrock Converse stub that
speaks the real wire format. Cost is accounted per step and run, and budgets hold."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import RedisServer, Workers, base_env, bcce
from tests.fakes import bedrock

pytestmark = pytest.mark.integration
pytest.importorskip("claude_agent_sdk")

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "claude"
DB = 14


@pytest.fixture(scope="module")
def converse() -> Iterator[bedrock.Bedrock]:
    with bedrock.serve([bedrock.answer("Changed add() to add.", 2000, 100)]) as server:
        yield server


@pytest.fixture(scope="module")
def pools(
    redis_server: RedisServer,
    converse: bedrock.Bedrock,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workers]:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    env = base_env(
        BCCE_BROKER_URL=url,
        # The fake `claude` found on the worker's PATH, as a deployment's would be.
        BCCE_CLAUDE_BIN="claude",
        PATH=f"{FAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AWS_REGION="us-west-2",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=converse.url,
    )
    group = Workers(url, tmp_path_factory.mktemp("agent-worker-logs"))
    for pool in ("policy", "agent", "command"):
        group.start([pool], concurrency=1, env=env)
    yield group
    group.stop()


def repository(path: Path) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "src" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
            cwd=path,
            check=True,
            capture_output=True,
        )
    return path


def workflow(tmp_path: Path, scenario: dict[str, Any], extra_env: str = "") -> Path:
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    path = tmp_path / "fix.yml"
    path.write_text(
        f"""\
version: 1
workflow: fix and summarise
model: us.anthropic.claude-sonnet-4-5-20250929-v1:0
env:
  team: payments
  FAKE_CLAUDE_SCENARIO: {tmp_path / "scenario.json"}
{extra_env}
steps:
  - id: fix
    type: agent
    prompt: Make add() add.
    available_tools: [ReadFile, Search, Diff]
    policy:
      timeout_seconds: 60
      allowed_paths: ["src/**"]
  - id: check
    type: cmd
    command: grep -c "a + b" src/calc.py
    policy:
      cmd_allowlist: [grep]
  - id: summary
    type: prompt
    model: global.anthropic.claude-haiku-4-5-20251001-v1:0
    prompt: "Summarise this change for a changelog: {{{{ steps.fix.output }}}}"
"""
    )
    return path


EDIT = {
    "session_id": "sess-e2e",
    "actions": [
        {
            "tool": "Edit",
            "input": {"file_path": "src/calc.py", "old_string": "a - b", "new_string": "a + b"},
        }
    ],
    "result": "add() now adds.",
    "usage": {"input_tokens": 1500, "output_tokens": 400},
    "total_cost_usd": 0.0105,
}


def run(pools: Workers, path: Path, workspace: Path, *more: str) -> tuple[int, dict[str, Any]]:
    result = bcce(
        "workflow",
        "run",
        str(path),
        "--workspace",
        str(workspace),
        "--json",
        *more,
        env=base_env(BCCE_BROKER_URL=pools.broker_url),
        cwd=workspace,
        timeout=180,
    )
    lines = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
    summary = next((x for x in lines if x.get("type") == "run.summary"), {})
    assert summary, result.err
    return result.code, summary


def test_an_agent_edit_is_checked_by_a_command_and_summarised_by_a_model(
    pools: Workers, converse: bedrock.Bedrock, tmp_path: Path
) -> None:
    workspace = repository(tmp_path / "repo")
    code, summary = run(pools, workflow(tmp_path, EDIT), workspace)

    assert code == 0, summary
    steps = {s["id"]: s for s in summary["steps"]}
    assert [s["status"] for s in summary["steps"]] == ["succeeded"] * 3
    # The agent worked in the run's copy of the repository: nothing reached the original.
    assert (workspace / "src" / "calc.py").read_text().endswith("a - b\n")
    fix_dir = Path(summary["run_dir"]) / "fix"
    assert "+    return a + b" in (fix_dir / "changes.diff").read_text()
    assert (fix_dir / "transcript.jsonl").stat().st_size > 0
    assert steps["fix"]["cost_usd"] == pytest.approx(0.0105)
    assert steps["fix"]["usage"] == {
        "input_tokens": 1500,
        "output_tokens": 400,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    # The prompt step: priced from the table (Haiku 4.5: $1 in, $5 out per million).
    assert steps["summary"]["cost_usd"] == pytest.approx((2000 * 1 + 100 * 5) / 1e6)
    assert steps["summary"]["model"] == "global.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert summary["cost_usd"] == pytest.approx(0.0105 + 0.0025)
    assert summary["labels"] == {"team": "payments"}
    sent = converse.requests[-1]["body"]["messages"][0]["content"][0]["text"]
    assert sent == "Summarise this change for a changelog: add() now adds.\n"
    assert (Path(summary["run_dir"]) / "summary" / "output.txt").read_text() == (
        "Changed add() to add.\n"
    )

    report = bcce(
        "cost",
        "report",
        "--by",
        "team",
        "--json",
        env=base_env(BCCE_BROKER_URL=pools.broker_url),
    )
    assert report.code == 0, report.err
    groups = {g["key"]: g for g in json.loads(report.out)["groups"]}
    assert groups["payments"]["cost_usd"] >= 0.013


def test_a_denied_tool_call_is_in_the_run_history_and_fails_the_step(
    pools: Workers, tmp_path: Path
) -> None:
    workspace = repository(tmp_path / "repo")
    scenario = {
        "actions": [{"tool": "Write", "input": {"file_path": "/etc/cron.d/x", "content": "x"}}],
        "result": "tried",
    }
    code, summary = run(pools, workflow(tmp_path, scenario), workspace)
    assert code == 1
    assert summary["steps"][0]["status"] == "failed"
    assert "denied by policy" in summary["steps"][0]["error"]
    logs = bcce(
        "workflow",
        "logs",
        summary["run_id"],
        "--json",
        env=base_env(BCCE_BROKER_URL=pools.broker_url),
    )
    denied = [json.loads(x) for x in logs.out.splitlines() if "step.tool_denied" in x]
    assert denied and denied[0]["tool"] == "Write"
    assert "outside the workspace" in denied[0]["reason"]


@pytest.mark.parametrize(
    ("cap", "error", "statuses"),
    [
        # The step that goes over ends the run: its work is not taken further.
        (
            "0.01",
            "step fix failed: the run has spent $0.0105 of its env.max_cost_usd $0.01",
            ["failed", "pending", "pending"],
        ),
        # A run that has spent exactly its budget: the gate denies the next step.
        (
            "0.0105",
            "step check denied: the run has spent $0.0105 of its env.max_cost_usd $0.0105",
            ["succeeded", "denied", "pending"],
        ),
    ],
)
def test_a_run_over_its_budget_ends_with_exit_6(
    pools: Workers, tmp_path: Path, cap: str, error: str, statuses: list[str]
) -> None:
    workspace = repository(tmp_path / "repo")
    path = workflow(tmp_path, EDIT, extra_env=f"  max_cost_usd: {cap}")
    code, summary = run(pools, path, workspace)
    assert code == 6
    assert summary["status"] == "budget_exceeded"
    assert summary["error"] == error
    assert [s["status"] for s in summary["steps"]] == statuses
