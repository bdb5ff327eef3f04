"""The shipped examples: every ``examples/*.yml`` validates, and the ones with agent and
prompt steps run end to end in embedded mode (no broker: an in-process Celery chain with
worker threads) against a small git repository.

Only the model is fake: agent steps drive ``tests/fakes/claude`` through the Claude Agent
SDK, prompt steps call the Bedrock Converse wire stub in ``tests/fakes/bedrock.py``.
Agent steps run with a scrubbed environment, so the fake is reached through a wrapper
(``BCCE_CLAUDE_BIN``) that picks the scenario of the step it runs for from ``BCCE_STEP_ID``.

Assertions hold whether steps run in the repository itself or in an isolated copy of it:
they read the run's artifacts from the summary's ``run_dir`` and check that the
repository's working tree, index and HEAD are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, base_env, bcce
from tests.fakes import bedrock

pytestmark = pytest.mark.integration
pytest.importorskip("claude_agent_sdk")

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "claude"
ALL_EXAMPLES = sorted(EXAMPLES.glob("*.yml"))
CODE_REVIEW = EXAMPLES / "code-review.yml"
PR_SUMMARY = EXAMPLES / "pr-summary.yml"
SONNET = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"  # code-review.yml's default
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"  # passed to pr-summary.yml as a --var
RUNS_DIR = ".bcce_runs"  # where embedded runs keep artifacts when the workspace is the repo


def needs_apply_diff(path: Path) -> bool:
    """Whether the workflow applies changes (not run here: it waits for an approval)."""
    return re.search(r"^\s*(-\s+)?type:\s*apply_diff\s*$", path.read_text(), re.M) is not None


# --- a small git repository -------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def repository(path: Path) -> Path:
    """Three commits: calc.py, then a subtract() bug fix, then a multiply() with a test."""
    path.mkdir(parents=True)
    (path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (path / "README.md").write_text("# calc\n")
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-qm", "Add calc")
    (path / "calc.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef subtract(a, b):\n    return a - b\n"
    )
    git(path, "commit", "-qam", "Add subtract()")
    with (path / "calc.py").open("a") as handle:
        handle.write("\n\ndef multiply(a, b):\n    return a * b\n")
    (path / "test_calc.py").write_text(
        "from calc import multiply\n\n\ndef test_multiply():\n    assert multiply(2, 3) == 6\n"
    )
    git(path, "add", ".")
    git(path, "commit", "-qm", "Add multiply() and its test")
    return path


def tree_state(repo: Path) -> dict[str, Any]:
    """HEAD, git status and every file's hash, leaving out .git and the runs directory."""
    status = [
        line
        for line in git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
        if not line[3:].startswith(RUNS_DIR + "/")
    ]
    files = {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and p.relative_to(repo).parts[0] not in (".git", RUNS_DIR)
    }
    return {"head": git(repo, "rev-parse", "HEAD").strip(), "status": status, "files": files}


# --- running an example ------------------------------------------------------------------


@dataclass
class Run:
    """A finished ``bcce workflow run`` of an example, and everything around it."""

    code: int
    out: str
    err: str
    repo: Path
    before: dict[str, Any]
    summary: dict[str, Any]
    events: list[dict[str, Any]]
    calls: list[dict[str, Any]]  # the fake claude's final log line per invocation
    converse: list[dict[str, Any]]  # requests the Bedrock stub received

    @property
    def run_dir(self) -> Path:
        return Path(self.summary["run_dir"])

    def step(self, step_id: str) -> dict[str, Any]:
        return next(s for s in self.summary["steps"] if s["id"] == step_id)

    def artifact(self, step_id: str, name: str) -> str:
        return (self.run_dir / step_id / name).read_text(encoding="utf-8")

    def metrics(self, step_id: str) -> dict[str, Any]:
        return dict(json.loads(self.artifact(step_id, "metrics.json")))

    def call(self, step_id: str) -> dict[str, Any]:
        found = [c for c in self.calls if c["env"].get("BCCE_STEP_ID") == step_id]
        assert len(found) == 1, [c["env"].get("BCCE_STEP_ID") for c in self.calls]
        return found[0]

    def context(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def claude_wrapper(home: Path, scenarios: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """A BCCE_CLAUDE_BIN that runs the fake with the scenario of the current step."""
    home.mkdir(parents=True, exist_ok=True)
    for step_id, scenario in scenarios.items():
        (home / f"scenario-{step_id}.json").write_text(json.dumps(scenario))
    log = home / "claude-calls.jsonl"
    wrapper = home / "claude"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export FAKE_CLAUDE_LOG='{log}'\n"
        f"scenario='{home}/scenario-'\"$BCCE_STEP_ID\"'.json'\n"
        'if [ -f "$scenario" ]; then export FAKE_CLAUDE_SCENARIO="$scenario"; fi\n'
        f"exec '{FAKE}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper, log


def final_calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    last: dict[str, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        last[entry["invocation_id"]] = entry
    return [e for e in last.values() if not e["partial"]]


def run_example(
    workflow: Path,
    tmp: Path,
    *,
    scenarios: dict[str, dict[str, Any]] | None = None,
    replies: list[Any] | None = None,
    variables: dict[str, str] | None = None,
    uncommitted: dict[str, str] | None = None,
) -> Run:
    repo = repository(tmp / "repo")
    for name, text in (uncommitted or {}).items():
        (repo / name).write_text(text)
    before = tree_state(repo)
    wrapper, log = claude_wrapper(tmp / "fake-claude", scenarios or {})
    summary_file = tmp / "summary.json"
    with bedrock.serve(replies or [bedrock.answer("stub answer")]) as converse:
        env = base_env(
            BCCE_CLAUDE_BIN=str(wrapper),
            AWS_REGION="us-west-2",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=converse.url,
            # `python3` in cmd steps is this interpreter (it has pytest).
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
            env.pop(key, None)
        assert "BCCE_BROKER_URL" not in env  # embedded mode
        args = [f"--var={k}={v}" for k, v in (variables or {}).items()]
        result = bcce(
            "workflow",
            "run",
            str(workflow),
            "--workspace",
            str(repo),
            "--json",
            "--summary-json",
            str(summary_file),
            *args,
            env=env,
            cwd=repo,
            timeout=120,
        )
        requests = list(converse.requests)
    events = [json.loads(x) for x in result.out.splitlines() if x.startswith("{")]
    assert summary_file.is_file(), f"no --summary-json file\n{result.out}\n{result.err}"
    return Run(
        code=result.code,
        out=result.out,
        err=result.err,
        repo=repo,
        before=before,
        summary=json.loads(summary_file.read_text()),
        events=events,
        calls=final_calls(log),
        converse=requests,
    )


# --- validation --------------------------------------------------------------------------


def test_the_examples_are_there() -> None:
    names = {p.name for p in ALL_EXAMPLES}
    assert {"hello.yml", "code-review.yml", "pr-summary.yml"} <= names, names
    for name in ("review.md", "security-review.md", "pr-summary.md"):
        assert (EXAMPLES / "prompts" / name).is_file(), name


@pytest.mark.parametrize("workflow", ALL_EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(workflow: Path) -> None:
    result = bcce("workflow", "validate", str(workflow), env=base_env())
    assert result.code == 0, result.out + result.err
    assert f"{workflow.name}: ok" in result.out, result.out
    assert result.err == ""


def test_all_examples_validate_in_one_call() -> None:
    result = bcce("workflow", "validate", *map(str, ALL_EXAMPLES), env=base_env())
    assert result.code == 0, result.out + result.err
    assert result.out.count(": ok (") == len(ALL_EXAMPLES), result.out


@pytest.mark.parametrize("workflow", ALL_EXAMPLES, ids=lambda p: p.name)
def test_every_example_compiles_to_a_plan(workflow: Path, tmp_path: Path) -> None:
    """``--dry-run`` compiles the chain (queues, effective policies) without running it."""
    result = bcce("workflow", "run", str(workflow), "--dry-run", env=base_env(), cwd=tmp_path)
    assert result.code == 0, result.out + result.err
    assert not (tmp_path / RUNS_DIR).exists()


# --- code-review.yml ---------------------------------------------------------------------

REVIEW: dict[str, Any] = {
    "session_id": "sess-review",
    "actions": [
        {"tool": "Read", "input": {"file_path": "calc.py"}},
        {"tool": "Grep", "input": {"pattern": "multiply", "path": "."}},
        {"tool": "Bash", "input": {"command": "git show --stat HEAD"}},
        {"tool": "Bash", "input": {"command": "git log --oneline -3"}},
    ],
    "result": "LGTM: multiply() is correct and tested.",
    "usage": {"input_tokens": 3000, "output_tokens": 250},
    "total_cost_usd": 0.0123,
}
SECURITY: dict[str, Any] = {
    "session_id": "sess-security",
    "actions": [{"tool": "Glob", "input": {"pattern": "**/*.py"}}],
    "result": "No security problems found.",
    "usage": {"input_tokens": 1000, "output_tokens": 100},
    # no total_cost_usd: bcce prices the usage from its table (Sonnet 4.5: $3 in, $15 out)
}


@pytest.fixture(scope="module")
def code_review(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_example(
        CODE_REVIEW,
        tmp_path_factory.mktemp("code-review"),
        scenarios={"review": REVIEW, "security": SECURITY},
    )


def test_code_review_runs_every_step_to_success(code_review: Run) -> None:
    run = code_review
    assert run.code == 0, run.context()
    assert (run.summary["status"], run.summary["exit_code"]) == ("succeeded", 0)
    assert run.summary["workflow"] == "Code review"
    assert [(s["id"], s["type"], s["status"]) for s in run.summary["steps"]] == [
        ("changes", "cmd", "succeeded"),
        ("review", "agent", "succeeded"),
        ("security", "agent", "succeeded"),
    ]
    assert all(s["attempts"] == 1 and s["error"] is None for s in run.summary["steps"])
    assert run.step("review")["worker"].startswith("agent@embedded-")
    assert run.step("changes")["worker"].startswith("command@embedded-")
    assert run.summary["labels"] == {"team": "platform"}
    # the --json stream ends with the same summary
    assert run.events[-1]["type"] == "run.summary"
    assert (run.events[-1]["run_id"], run.events[-1]["status"]) == (
        run.summary["run_id"],
        "succeeded",
    )


def test_code_review_status_reads_the_finished_run(code_review: Run) -> None:
    run_id = code_review.summary["run_id"]
    status = bcce("workflow", "status", run_id, "--json", env=base_env(), cwd=code_review.repo)
    assert status.code == 0, status.out + status.err
    data = json.loads(status.out)
    assert (data["run_id"], data["status"], data["exit_code"]) == (run_id, "succeeded", 0)
    assert [(s["id"], s["status"]) for s in data["steps"]] == [
        ("changes", "succeeded"),
        ("review", "succeeded"),
        ("security", "succeeded"),
    ]
    assert data["cost_usd"] == pytest.approx(code_review.summary["cost_usd"])


def test_code_review_outputs_are_what_git_and_the_agents_returned(code_review: Run) -> None:
    run = code_review
    changes = run.artifact("changes", "output.txt")
    assert re.search(r"calc\.py\s+\|\s+\d+ \+", changes), changes  # git diff --stat HEAD~1
    assert "test_calc.py" in changes and "2 files changed" in changes
    assert run.artifact("review", "output.txt") == REVIEW["result"] + "\n"
    assert run.artifact("security", "output.txt") == SECURITY["result"] + "\n"
    # each agent got its prompt file, with the changes step's output filled in
    review_prompt = run.call("review")["prompt"]
    assert review_prompt.startswith("Review the latest change to this repository.")
    assert "test_calc.py" in review_prompt and "{{" not in review_prompt
    assert "read-only" in review_prompt
    security_prompt = run.call("security")["prompt"]
    assert security_prompt.startswith("Look for security problems")
    assert "test_calc.py" in security_prompt
    assert "global.anthropic.claude-sonnet-4-5" in run.call("review")["model"]


def test_code_review_agents_are_read_only_and_their_tools_worked(code_review: Run) -> None:
    run = code_review
    review = run.call("review")
    # max_edits: 0 -> no edit tool is offered; Bash only for the allow-listed git commands
    for tool in ("Write", "Edit", "MultiEdit"):
        assert tool in review["disallowed_tools"], review["disallowed_tools"]
    assert {"Bash(git diff:*)", "Bash(git log:*)", "Bash(git show:*)"} <= set(
        review["allowed_tools"]
    )
    assert "Bash" in run.call("security")["disallowed_tools"]  # no Cmd tool in security
    assert all(d["allowed"] for d in review["decisions"]), review["decisions"]
    for step_id in ("review", "security"):
        metrics = run.metrics(step_id)
        assert metrics["denials"] == [] and metrics["permission_denials"] == []
        assert (metrics["files_changed"], metrics["lines_changed"]) == (0, 0)
        assert metrics["changes_discarded"] is False
        assert run.artifact(step_id, "changes.diff") == ""
    # the Read, Grep and git tool calls really ran, in whatever tree the agent was given
    transcript = run.artifact("review", "transcript.jsonl")
    assert "return a * b" in transcript  # Read calc.py
    assert "Add multiply() and its test" in transcript  # git log --oneline -3
    assert run.metrics("review")["turns"] == len(REVIEW["actions"]) + 1


def test_code_review_changes_nothing_in_the_repository(code_review: Run) -> None:
    assert tree_state(code_review.repo) == code_review.before


def test_code_review_records_usage_and_cost(code_review: Run) -> None:
    run = code_review
    review, security = run.step("review"), run.step("security")
    assert review["cost_usd"] == pytest.approx(0.0123)  # reported by Claude Code
    assert review["usage"]["input_tokens"] == 3000
    assert review["usage"]["output_tokens"] == 250
    assert review["model"] == SONNET
    priced = (1000 * 3 + 100 * 15) / 1e6  # from the price table
    assert security["cost_usd"] == pytest.approx(priced)
    assert security["usage"]["input_tokens"] == 1000
    assert run.step("changes")["cost_usd"] == 0
    assert run.summary["cost_usd"] == pytest.approx(0.0123 + priced)
    assert run.metrics("review")["cost_source"] == "claude-code"
    assert run.metrics("security")["cost_source"] == "price-table"
    assert run.metrics("review")["session_id"] == "sess-review"
    assert run.metrics("security")["cost_usd"] == pytest.approx(priced)


# --- code-review.yml: an agent that tries to change the repository ------------------------


def test_code_review_agent_running_a_command_outside_its_allowlist_fails_the_step(
    tmp_path: Path,
) -> None:
    """Bash is offered for git diff/log/show only; ``touch`` is denied by bcce's policy
    callback, the denial is recorded, and fail_on_denial (the default) fails the step."""
    scenario = {
        "actions": [
            {"tool": "Bash", "input": {"command": "touch PWNED.txt"}},
            {"tool": "Bash", "input": {"command": "git log --oneline -1"}},
        ],
        "result": "Tried to write a file.",
        "usage": {"input_tokens": 500, "output_tokens": 50},
        "total_cost_usd": 0.002,
    }
    run = run_example(CODE_REVIEW, tmp_path, scenarios={"review": scenario})

    assert run.code == 1, run.context()  # README: exit 1, a step failed
    assert run.summary["status"] == "failed"
    assert [s["status"] for s in run.summary["steps"]] == ["succeeded", "failed", "pending"]
    review = run.step("review")
    assert "denied by policy" in (review["error"] or ""), review["error"]
    assert "Bash" in review["error"]
    denials = run.metrics("review")["denials"]
    assert [d["tool"] for d in denials] == ["Bash"]
    assert denials[0]["input"]["command"] == "touch PWNED.txt"
    denied_events = [e for e in run.events if e.get("type") == "step.tool_denied"]
    assert denied_events and denied_events[0]["tool"] == "Bash", run.events
    assert review["cost_usd"] == pytest.approx(0.002)  # a failed step's spend still counts
    assert not (run.repo / "PWNED.txt").exists()
    assert tree_state(run.repo) == run.before
    assert [c["env"]["BCCE_STEP_ID"] for c in run.calls] == ["review"]  # security never ran


WRITE: dict[str, Any] = {
    "actions": [{"tool": "Write", "input": {"file_path": "PWNED.txt", "content": "owned\n"}}],
    "result": "I wrote PWNED.txt.",
    "usage": {"input_tokens": 500, "output_tokens": 50},
    "total_cost_usd": 0.002,
}


@pytest.fixture(scope="module")
def code_review_write(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_example(
        CODE_REVIEW, tmp_path_factory.mktemp("code-review-write"), scenarios={"review": WRITE}
    )


def test_code_review_agent_write_is_refused_and_the_repository_is_unchanged(
    code_review_write: Run,
) -> None:
    run = code_review_write
    assert not (run.repo / "PWNED.txt").exists()
    assert tree_state(run.repo) == run.before
    review = run.call("review")
    assert "Write" in review["disallowed_tools"]
    # Claude Code refused the Write on bcce's deny rule and reported it in its result
    refused = run.metrics("review")["permission_denials"]
    assert [d["tool_name"] for d in refused] == ["Write"], refused
    assert refused[0]["tool_input"]["file_path"] == "PWNED.txt"
    assert run.metrics("review")["files_changed"] == 0
    assert run.metrics("review")["changes_discarded"] is False  # nothing to discard


def test_code_review_agent_write_fails_the_step_on_denial(code_review_write: Run) -> None:
    run = code_review_write
    assert run.code == 1, run.context()  # README: exit 1, a step failed
    assert [s["status"] for s in run.summary["steps"]] == ["succeeded", "failed", "pending"]
    assert "denied by policy" in (run.step("review")["error"] or "")
    assert any(e.get("type") == "step.tool_denied" for e in run.events)


# --- pr-summary.yml ----------------------------------------------------------------------

PR_TEXT = "# Add multiply() and subtract()\n\n## Why\n\nMore arithmetic.\n"


@pytest.fixture(scope="module")
def pr_summary(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_example(
        PR_SUMMARY,
        tmp_path_factory.mktemp("pr-summary"),
        replies=[bedrock.answer(PR_TEXT, 2000, 300)],
        variables={"BASE": "HEAD~2", "BCCE_MODEL": HAIKU},
    )


def test_pr_summary_runs_every_step_to_success(pr_summary: Run) -> None:
    run = pr_summary
    assert run.code == 0, run.context()
    assert (run.summary["status"], run.summary["exit_code"]) == ("succeeded", 0)
    assert run.summary["workflow"] == "PR summary"
    assert [(s["id"], s["type"], s["status"]) for s in run.summary["steps"]] == [
        ("commits", "cmd", "succeeded"),
        ("diff", "cmd", "succeeded"),
        ("summary", "prompt", "succeeded"),
    ]
    assert run.calls == []  # no agent step, no Claude Code


def test_pr_summary_sends_the_commits_and_diff_and_keeps_the_answer(pr_summary: Run) -> None:
    run = pr_summary
    commits = run.artifact("commits", "output.txt").splitlines()  # BASE=HEAD~2: two commits
    assert [line.split(" ", 1)[1] for line in commits] == [
        "Add multiply() and its test",
        "Add subtract()",
    ]
    diff = run.artifact("diff", "output.txt")
    assert "+def subtract(a, b):" in diff and "+def multiply(a, b):" in diff
    assert len(run.converse) == 1, run.converse
    request = run.converse[0]
    assert request["model"] == HAIKU  # --var BCCE_MODEL
    sent = request["body"]["messages"][0]["content"][0]["text"]
    assert sent.startswith("Write a pull-request description for this change")
    assert "Add multiply() and its test" in sent and "+def multiply(a, b):" in sent
    assert "{{" not in sent
    assert run.artifact("summary", "output.txt") == PR_TEXT + "\n"


def test_pr_summary_records_usage_and_cost(pr_summary: Run) -> None:
    run = pr_summary
    summary = run.step("summary")
    assert summary["model"] == HAIKU
    assert summary["usage"]["input_tokens"] == 2000
    assert summary["usage"]["output_tokens"] == 300
    priced = (2000 * 1 + 300 * 5) / 1e6  # Haiku 4.5: $1 in, $5 out per million
    assert summary["cost_usd"] == pytest.approx(priced)
    assert run.metrics("summary")["cost_usd"] == pytest.approx(priced)
    assert run.summary["cost_usd"] == pytest.approx(priced)


def test_pr_summary_changes_nothing_in_the_repository(pr_summary: Run) -> None:
    assert tree_state(pr_summary.repo) == pr_summary.before


# --- every runnable example, with default fakes --------------------------------------------


@pytest.mark.parametrize("workflow", ALL_EXAMPLES, ids=lambda p: p.name)
def test_every_example_runs_end_to_end(
    workflow: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Whatever examples ship: exit 0, no step failed unless it is allowed to (on_error:
    continue), every step has its artifacts, the repo is untouched (the default fake agent
    changes nothing, so an apply_diff step has nothing to apply)."""
    shared = {CODE_REVIEW.name: "code_review", PR_SUMMARY.name: "pr_summary"}
    if workflow.name in shared:
        run: Run = request.getfixturevalue(shared[workflow.name])
    else:
        run = run_example(workflow, tmp_path)
    assert run.code == 0, run.context()
    assert run.summary["status"] == "succeeded"
    for step in run.summary["steps"]:
        assert step["status"] == "succeeded" or step["continued"], step
        # (a succeeded prompt step writes no stdout.txt/stderr.txt, so only these three)
        for name in ("output.txt", "policy.json", "metrics.json"):
            assert (run.run_dir / step["id"] / name).is_file(), f"{step['id']}/{name}"
    assert tree_state(run.repo) == run.before


# --- test-fixer.yml ------------------------------------------------------------------------

TEST_FIXER = EXAMPLES / "test-fixer.yml"
BROKEN = (
    "def add(a, b):\n    return a + b\n\n\ndef subtract(a, b):\n    return a - b\n\n\n"
    "def multiply(a, b):\n    return a ** b\n"
)
FIX_TESTS: dict[str, Any] = {
    "session_id": "sess-fix",
    "actions": [
        {"tool": "Read", "input": {"file_path": "calc.py"}},
        {
            "tool": "Edit",
            "input": {"file_path": "calc.py", "old_string": "a ** b", "new_string": "a * b"},
        },
        {"tool": "Bash", "input": {"command": "python3 -m pytest -q -p no:cacheprovider"}},
    ],
    "result": "multiply() used ** instead of *; fixed.",
}


@pytest.fixture(scope="module")
def test_fixer(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_example(
        TEST_FIXER,
        tmp_path_factory.mktemp("test-fixer"),
        scenarios={"fix": FIX_TESTS},
        uncommitted={"calc.py": BROKEN},
    )


def test_test_fixer_fixes_in_a_copy_and_waits_for_approval(test_fixer: Run) -> None:
    run = test_fixer
    assert run.code == 4, run.context()
    assert run.summary["status"] == "awaiting_approval"
    statuses = {s["id"]: s["status"] for s in run.summary["steps"]}
    assert statuses == {
        "failing": "failed",
        "fix": "succeeded",
        "verify": "succeeded",
        "ship": "awaiting_approval",
    }
    assert "1 failed" in run.artifact("failing", "stdout.txt")
    prompt = run.call("fix")["prompt"]
    assert prompt.startswith("The test suite of this repository fails.")
    assert "1 failed" in prompt and "{{" not in prompt  # the failing run's output
    assert "passed" in run.artifact("verify", "stdout.txt")
    proposed = run.artifact("ship", "proposed.diff")
    assert "-    return a ** b" in proposed and "+    return a * b" in proposed
    assert tree_state(run.repo) == run.before  # nothing landed yet


def test_test_fixer_lands_the_fix_once_approved(test_fixer: Run) -> None:
    run = test_fixer
    sha = next(s for s in run.summary["steps"] if s["id"] == "ship")["approval"]["sha256"]
    env = base_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    approved = bcce(
        "workflow", "approve", run.summary["run_id"], "ship", "--sha", sha, env=env, cwd=run.repo
    )
    assert approved.code == 0, approved.out + approved.err
    assert "return a * b" in (run.repo / "calc.py").read_text()
    status = bcce("workflow", "status", run.summary["run_id"], "--json", env=env, cwd=run.repo)
    assert json.loads(status.out)["status"] == "succeeded"
