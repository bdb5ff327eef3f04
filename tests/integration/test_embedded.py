"""Embedded mode: ``bcce workflow run`` with no broker, as on a fresh laptop.

Every command runs in a subprocess without any ``BCCE_*`` variable (``base_env`` drops
them), in a temporary current directory where runs leave ``.bcce_runs/``.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Result, base_env, bcce, start_run, wait_for

pytestmark = pytest.mark.integration

HELLO = EXAMPLES / "hello.yml"
RUN_ID = re.compile(r"^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-[0-9a-f]{6}$")
STEPS = ["greet", "flaky_check", "shout", "count_words"]


def embedded(*args: str, cwd: Path) -> Result:
    env = base_env()
    assert "BCCE_BROKER_URL" not in env  # embedded: no broker at all
    return bcce(*args, env=env, cwd=cwd)


def write(tmp_path: Path, text: str, name: str = "wf.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def only_run_dir(cwd: Path) -> Path:
    runs = list((cwd / ".bcce_runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One embedded run of examples/hello.yml, shared by the tests that only read it."""
    cwd = tmp_path_factory.mktemp("embedded-hello")
    return cwd, embedded("workflow", "run", str(HELLO), cwd=cwd)


def test_hello_runs_with_no_server_and_prints_a_line_per_step(
    hello: tuple[Path, Result],
) -> None:
    _, result = hello
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("run ") and "(Hello, bcce, 4 steps, embedded)" in lines[0]
    for step in STEPS:
        assert any(line.strip().startswith(f"{step} started (attempt 1") for line in lines), step
    assert "  greet succeeded in " in result.out
    assert "flaky_check failed" in result.out
    assert "continuing (on_error: continue)" in result.out
    assert re.search(r"^run \S+ succeeded in [\d.]+s \(exit 0\)$", lines[-1]), lines[-1]
    assert result.err == ""


def test_hello_leaves_run_state_and_every_steps_artifacts(hello: tuple[Path, Result]) -> None:
    cwd, _ = hello
    run_dir = only_run_dir(cwd)
    assert RUN_ID.match(run_dir.name)
    state = json.loads((run_dir / "run-state.json").read_text())
    assert state["id"] == run_dir.name
    assert state["status"] == "succeeded"
    assert state["workspace"] == str(cwd.resolve())
    steps = {s["id"]: s for s in state["steps"]}
    assert list(steps) == STEPS
    assert steps["flaky_check"]["status"] == "failed"
    assert steps["flaky_check"]["continued"] is True
    assert steps["flaky_check"]["exit_code"] != 0
    assert all(steps[s]["status"] == "succeeded" for s in ("greet", "shout", "count_words"))
    for step in STEPS:
        for name in ("stdout.txt", "stderr.txt", "output.txt", "policy.json", "metrics.json"):
            assert (run_dir / step / name).is_file(), f"{step}/{name}"
    assert (run_dir / "shout" / "output.txt").read_text() == "HELLO FROM BCCE\n"
    assert (run_dir / "count_words" / "output.txt").read_text().split()[0] == "3"
    assert "does-not-exist" in (run_dir / "flaky_check" / "stderr.txt").read_text()


def test_embedded_steps_record_the_pool_worker_that_ran_them(
    hello: tuple[Path, Result],
) -> None:
    cwd, result = hello
    metrics = json.loads((only_run_dir(cwd) / "greet" / "metrics.json").read_text())
    assert metrics["worker"].startswith("command@embedded-")
    assert "greet started (attempt 1, command@embedded-" in result.out


def test_status_and_list_read_an_embedded_run_from_disk(hello: tuple[Path, Result]) -> None:
    cwd, _ = hello
    run_id = only_run_dir(cwd).name
    status = embedded("workflow", "status", run_id, "--json", cwd=cwd)
    assert status.code == 0, status.err
    data = json.loads(status.out)
    assert (data["run_id"], data["status"], data["exit_code"]) == (run_id, "succeeded", 0)
    assert [s["id"] for s in data["steps"]] == STEPS
    assert data["steps"][1]["continued"] is True

    listed = embedded("workflow", "list", "--json", cwd=cwd)
    assert listed.code == 0, listed.err
    runs = [json.loads(line) for line in listed.out.splitlines()]
    assert [(r["id"], r["status"]) for r in runs] == [(run_id, "succeeded")]
    failed = embedded("workflow", "list", "--json", "--status", "failed", cwd=cwd)
    assert failed.code == 0 and failed.out == ""


def test_status_of_an_unknown_run_exits_2_in_one_line(tmp_path: Path) -> None:
    result = embedded("workflow", "status", "2026-01-01T00-00-00-000000", cwd=tmp_path)
    assert result.code == 2
    assert "no run '2026-01-01T00-00-00-000000'" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_json_prints_event_lines_ending_with_a_run_summary(tmp_path: Path) -> None:
    result = embedded("workflow", "run", str(HELLO), "--json", cwd=tmp_path)
    assert result.code == 0, result.out + result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    assert events[0]["type"] == "run.submitted"
    summary = events[-1]
    assert summary["type"] == "run.summary"
    assert (summary["status"], summary["exit_code"]) == ("succeeded", 0)
    assert [s["id"] for s in summary["steps"]] == STEPS
    started = [e["step"] for e in events if e["type"] == "step.started"]
    assert started == STEPS
    assert Path(summary["run_dir"]) == only_run_dir(tmp_path).resolve()


def test_a_failing_step_exits_1_and_later_steps_never_run(tmp_path: Path) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: fails
        steps:
          - id: boom
            type: cmd
            command: sh -c "echo partial; exit 3"
          - id: after
            type: cmd
            command: touch after-ran
        """,
    )
    result = embedded("workflow", "run", str(wf), cwd=tmp_path)
    assert result.code == 1, result.out + result.err
    assert "boom failed" in result.out
    assert not (tmp_path / "after-ran").exists()
    state = json.loads((only_run_dir(tmp_path) / "run-state.json").read_text())
    assert state["status"] == "failed"
    assert [s["status"] for s in state["steps"]] == ["failed", "pending"]
    assert (only_run_dir(tmp_path) / "boom" / "stdout.txt").read_text() == "partial\n"


def test_a_command_outside_the_allowlist_is_denied_with_exit_3(tmp_path: Path) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: denied
        steps:
          - id: sneaky
            type: cmd
            command: touch pwned
            policy:
              cmd_allowlist: [echo]
        """,
    )
    result = embedded("workflow", "run", str(wf), cwd=tmp_path)
    assert result.code == 3, result.out + result.err
    assert "sneaky denied by cmd_allowlist" in result.out
    assert not (tmp_path / "pwned").exists()
    state = json.loads((only_run_dir(tmp_path) / "run-state.json").read_text())
    assert state["status"] == "denied"


def test_an_invalid_workflow_exits_2_with_its_place_and_creates_no_run(tmp_path: Path) -> None:
    wf = write(
        tmp_path,
        """\
        version: 1
        workflow: bad
        steps:
          - id: a
            type: cmd
            comand: echo hi
        """,
        name="bad.yml",
    )
    result = embedded("workflow", "run", str(wf), cwd=tmp_path)
    assert result.code == 2
    assert re.fullmatch(
        r"bcce: \S*bad\.yml:6:5 steps\[0\]\.comand: unknown key 'comand' "
        r"\(did you mean 'command'\?\)\n",
        result.err,
    ), result.err
    assert result.out == ""
    assert not (tmp_path / ".bcce_runs").exists()


def test_an_unknown_key_with_a_block_value_is_reported_on_the_keys_line(
    tmp_path: Path,
) -> None:
    wf = write(
        tmp_path,
        """\
        version: 1
        workflow: bad
        steps:
          - id: a
            type: cmd
            command: echo hi
            polcy:
              timeout_seconds: 5
        """,
        name="bad.yml",
    )
    result = embedded("workflow", "validate", str(wf), cwd=tmp_path)
    assert result.code == 2
    assert "bad.yml:7:5 steps[0].polcy: unknown key 'polcy'" in result.err


def test_no_wait_without_a_broker_exits_2_in_one_line(tmp_path: Path) -> None:
    result = embedded("workflow", "run", str(HELLO), "--no-wait", cwd=tmp_path)
    assert result.code == 2
    assert result.err.startswith("bcce: --no-wait needs a broker")
    assert len(result.err.strip().splitlines()) == 1
    assert result.out == ""
    assert not (tmp_path / ".bcce_runs").exists()


def test_another_process_cancels_an_embedded_run_and_resume_continues_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "wf.yml").write_text(
        textwrap.dedent(
            """\
            version: 1
            workflow: long
            steps:
              - id: first
                type: cmd
                command: echo first
              - id: slow
                type: cmd
                command: python3 -c "import os, time; time.sleep(60 * os.path.exists('nap'))"
              - id: last
                type: cmd
                command: echo done
            """
        )
    )
    (tmp_path / "nap").write_text("")
    env = base_env()
    runner = start_run(tmp_path / "wf.yml", tmp_path, env)
    assert runner.stdout is not None
    submitted = json.loads(runner.stdout.readline())
    run_id = submitted["run_id"]
    run_dir = Path(submitted["run_dir"])
    wait_for(
        lambda: (run_dir / "slow" / "policy.json").is_file(), timeout=30, what="slow step started"
    )
    asked = bcce("workflow", "cancel", run_id, "--reason", "enough", env=env, cwd=tmp_path)
    assert asked.code == 0, asked.err
    started = time.monotonic()
    out, _ = runner.communicate(timeout=30)
    assert runner.returncode == 5
    assert time.monotonic() - started < 15  # not the 60 s of the step
    summary = json.loads(out.splitlines()[-1])
    assert summary["status"] == "cancelled"
    assert summary["error"].endswith(": enough") and "cancelled by " in summary["error"]

    status = json.loads(bcce("workflow", "status", run_id, "--json", env=env, cwd=tmp_path).out)
    assert status["status"] == "cancelled"
    # The run can go on later, in this process, from the step that did not finish.
    (tmp_path / "nap").unlink()
    (tmp_path / "wf.yml").write_text("ignored: the stored snapshot is used\n")
    resumed = bcce("workflow", "resume", run_id, "--json", env=env, cwd=tmp_path, timeout=120)
    assert resumed.code == 0, resumed.out + resumed.err
    final = json.loads(resumed.out.splitlines()[-1])
    assert [(s["id"], s["status"], s["attempts"]) for s in final["steps"]] == [
        ("first", "succeeded", 1),
        ("slow", "succeeded", 2),
        ("last", "succeeded", 1),
    ]
