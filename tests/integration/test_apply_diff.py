"""apply_diff end to end: real Redis, real ``bcce worker`` pools (policy, command, diff).

Steps work in a copy of the repository; only an approved diff reaches it, and only the one
whose SHA-256 was approved.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bcce.state import RunStore
from tests.conftest import WORKSPACES, RedisServer, Result, Workers, base_env, bcce
from tests.gitrepo import git

pytestmark = pytest.mark.integration
DB = 9


@pytest.fixture(scope="module")
def pools(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    group = Workers(url, tmp_path_factory.mktemp("diff-worker-logs"))
    group.start(["policy", "command", "diff"], concurrency=1)
    yield group
    group.stop()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    ws = tmp_path / "repo"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (ws / ".gitignore").write_text("/.bcce_runs/\n__pycache__/\n")
    git(ws, "init", "-q")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "init")
    return ws


FIX = """\
  - id: fix
    type: cmd
    command: python3 -c "import pathlib; p = pathlib.Path('src/calc.py');
      p.write_text(p.read_text().replace('a - b', 'a + b'))"
  - id: check
    type: cmd
    command: python3 -c "import sys; sys.path.insert(0, 'src');
      import calc; assert calc.add(2, 2) == 4"
"""


def workflow(repo: Path, ship: str, steps: str = FIX) -> Path:
    path = repo.parent / "fix.yml"
    path.write_text(f"version: 1\nworkflow: fix\nsteps:\n{steps}  - id: ship\n{ship}")
    return path


SHIP = '    type: apply_diff\n    policy:\n      allowed_paths: ["src/**"]\n'


def cli(pools: Workers, *args: str, cwd: Path | None = None) -> Result:
    return bcce(*args, env=base_env(BCCE_BROKER_URL=pools.broker_url), cwd=cwd, timeout=120)


def run(pools: Workers, path: Path, repo: Path, *more: str) -> tuple[int, dict[str, Any]]:
    result = cli(pools, "workflow", "run", str(path), "--workspace", str(repo), "--json", *more)
    lines = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
    summary = next((x for x in lines if x.get("type") == "run.summary"), {})
    assert summary, result.err
    return result.code, summary


def steps(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in summary["steps"]}


def events(pools: Workers, run_id: str) -> list[dict[str, Any]]:
    return [e for _, e in RunStore.from_url(pools.broker_url, 3600).events(run_id)]


def test_the_run_stops_for_approval_and_applies_exactly_the_approved_diff(
    pools: Workers, repo: Path
) -> None:
    code, summary = run(pools, workflow(repo, SHIP), repo)
    run_id = summary["run_id"]
    assert code == 4, summary
    assert summary["status"] == "awaiting_approval"
    ship = steps(summary)["ship"]
    assert ship["status"] == "awaiting_approval"
    sha = ship["approval"]["sha256"]
    assert ship["approval"]["files"] == 1 and ship["approval"]["paths"] == ["src/calc.py"]
    assert "return a - b" in (repo / "src" / "calc.py").read_text()  # nothing landed yet
    assert git(repo, "status", "--porcelain") == ""

    shown = cli(pools, "workflow", "diff", run_id, "ship")
    assert shown.code == 0
    assert "+    return a + b" in shown.out
    assert f"sha256 {sha}" in shown.err

    wrong = cli(pools, "workflow", "approve", run_id, "ship", "--sha", "0" * 12)
    assert wrong.code == 2
    assert f"awaits approval of sha256 {sha}, not {'0' * 12}" in wrong.err

    approved = cli(
        pools, "workflow", "approve", run_id, "ship", "--sha", sha[:12], "--comment", "ok"
    )
    assert approved.code == 0, approved.out + approved.err
    assert "return a + b" in (repo / "src" / "calc.py").read_text()
    final = json.loads(cli(pools, "workflow", "status", run_id, "--json").out)
    record = steps(final)["ship"]
    assert final["status"] == "succeeded"
    assert record["approval"]["approved_sha"] == sha
    assert "@" in record["approval"]["approved_by"]
    kinds = [e["type"] for e in events(pools, run_id)]
    assert kinds.index("step.awaiting_approval") < kinds.index("step.approved")
    approval = next(e for e in events(pools, run_id) if e["type"] == "step.approved")
    assert approval["comment"] == "ok"

    again = cli(pools, "workflow", "approve", run_id, "ship")
    assert again.code == 2 and "is not awaiting approval" in again.err


def test_artifacts_and_workspaces_of_a_run_can_be_read_back(
    pools: Workers, repo: Path, tmp_path: Path
) -> None:
    code, summary = run(pools, workflow(repo, SHIP), repo)
    assert code == 4
    run_id = summary["run_id"]
    listing = cli(pools, "workflow", "artifacts", run_id, "--json")
    names = json.loads(listing.out)["artifacts"]
    assert {"run-state.json", "workflow.json", "workspace.patch"} <= set(names[""])
    assert {"changes.diff", "stdout.txt", "policy.json", "metrics.json"} <= set(names["fix"])
    assert "proposed.diff" in names["ship"]
    got = cli(pools, "workflow", "artifacts", run_id, "fix", "--get", "changes.diff")
    assert got.code == 0 and "+    return a + b" in got.out
    missing = cli(pools, "workflow", "artifacts", run_id, "fix", "--get", "../../etc")
    assert missing.code == 2

    checked = cli(pools, "workflow", "checkout", run_id, str(tmp_path / "co"), "--step", "fix")
    assert checked.code == 0, checked.err
    assert "return a + b" in (tmp_path / "co" / "src" / "calc.py").read_text()
    assert git(tmp_path / "co", "status", "--porcelain") == " M src/calc.py\n"
    unknown = cli(pools, "workflow", "checkout", run_id, str(tmp_path / "x"), "--step", "nope")
    assert unknown.code == 2 and "no step 'nope'" in unknown.err


def test_a_diff_altered_after_review_is_never_approved(pools: Workers, repo: Path) -> None:
    code, summary = run(pools, workflow(repo, SHIP), repo)
    assert code == 4
    proposed = Path(summary["run_dir"]) / "ship" / "proposed.diff"
    proposed.write_text(proposed.read_text().replace("a + b", "__import__('os')"))

    refused = cli(pools, "workflow", "approve", summary["run_id"], "ship")
    assert refused.code == 2
    assert "it was changed; nothing approved" in refused.err
    assert "return a - b" in (repo / "src" / "calc.py").read_text()


def test_a_rejected_diff_ends_the_run(pools: Workers, repo: Path) -> None:
    code, summary = run(pools, workflow(repo, SHIP), repo)
    assert code == 4
    run_id = summary["run_id"]
    rejected = cli(pools, "workflow", "reject", run_id, "ship", "--reason", "wrong fix")
    assert rejected.code == 0, rejected.err
    status = cli(pools, "workflow", "status", run_id, "--json")
    final = json.loads(status.out)
    assert status.code == 4
    assert final["status"] == "rejected"
    assert final["error"].startswith("step ship rejected by ") and "wrong fix" in final["error"]
    assert steps(final)["ship"]["status"] == "rejected"
    assert git(repo, "status", "--porcelain") == ""


def test_approve_all_commits_onto_a_branch_once(pools: Workers, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    path = workflow(repo, SHIP + "    target: branch\n")
    code, summary = run(pools, path, repo, "--approve-all")
    assert code == 0, summary
    run_id = summary["run_id"]
    branch = f"bcce/{run_id}"
    assert git(repo, "rev-parse", f"{branch}^").strip() == head
    assert "return a + b" in git(repo, "show", f"{branch}:src/calc.py")
    assert git(repo, "status", "--porcelain") == ""  # the working tree is left alone
    commit = git(repo, "rev-parse", branch).strip()

    # Applying again what already landed is a no-op.
    again = cli(pools, "workflow", "resume", run_id, "--from", "ship", "--json")
    assert again.code == 2 and "succeeded: there is nothing to resume" in again.err
    metrics = json.loads((Path(summary["run_dir"]) / "ship" / "applied.json").read_text())
    assert metrics["commit"] == commit


def test_policy_checks_come_before_any_approval(pools: Workers, repo: Path) -> None:
    ship = (
        '    type: apply_diff\n    approve: true\n    policy:\n      allowed_paths: ["docs/**"]\n'
    )
    code, summary = run(pools, workflow(repo, ship), repo)
    assert code == 1
    error = steps(summary)["ship"]["error"]
    assert error == (
        "policy violation: 'src/calc.py' is outside policy.allowed_paths ['docs/**']; "
        "nothing was applied"
    )
    assert git(repo, "status", "--porcelain") == ""


def test_a_working_tree_that_moved_on_is_not_overwritten(pools: Workers, repo: Path) -> None:
    code, summary = run(pools, workflow(repo, SHIP), repo)
    assert code == 4
    (repo / "src" / "calc.py").write_text("def add(a, b):\n    return b - a\n")  # meanwhile
    approved = cli(pools, "workflow", "approve", summary["run_id"], "ship")
    assert approved.code == 1
    status = json.loads(cli(pools, "workflow", "status", summary["run_id"], "--json").out)
    assert "does not apply to the working tree" in steps(status)["ship"]["error"]
    assert "return b - a" in (repo / "src" / "calc.py").read_text()


def test_uncommitted_work_travels_with_the_run(pools: Workers, repo: Path) -> None:
    (repo / "src" / "extra.py").write_text("X = 1\n")  # untracked, not committed
    steps_ = FIX + (
        "  - id: uses_extra\n    type: cmd\n"
        "    command: python3 -c \"import sys; sys.path.insert(0, 'src'); import extra\"\n"
    )
    code, summary = run(pools, workflow(repo, SHIP + "    approve: true\n", steps_), repo)
    assert code == 0, summary
    assert "return a + b" in (repo / "src" / "calc.py").read_text()
    assert (repo / "src" / "extra.py").read_text() == "X = 1\n"
    proposed = (Path(summary["run_dir"]) / "ship" / "proposed.diff").read_text()
    assert "extra.py" not in proposed  # the run's changes only, not what it started from


def test_an_approval_outlives_the_workers_that_stopped_for_it(pools: Workers, repo: Path) -> None:
    code, summary = run(pools, workflow(repo, SHIP), repo)
    assert code == 4
    pools.stop()  # every worker, and its copy of the repository, gone
    shutil.rmtree(WORKSPACES, ignore_errors=True)
    pools.start(["policy", "command", "diff"], concurrency=1)
    approved = cli(pools, "workflow", "approve", summary["run_id"], "ship")
    assert approved.code == 0, approved.out + approved.err
    assert "return a + b" in (repo / "src" / "calc.py").read_text()
