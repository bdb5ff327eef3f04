"""Cancel, resume, and noticing that no worker is left, through real workers and the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT, RedisServer, Workers, base_env, bcce, start_run, wait_for

pytestmark = pytest.mark.integration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def status(url: str, run_id: str) -> dict:  # type: ignore[type-arg]
    result = bcce("workflow", "status", run_id, "--json", env=base_env(BCCE_BROKER_URL=url))
    return json.loads(result.out)


def test_cancel_stops_the_step_in_flight_and_the_waiting_run_exits_5(
    workers: Workers, tmp_path: Path
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: long
        steps:
          - id: slow
            type: cmd
            shell: true
            command: sleep 60 & echo $! > child.pid; wait
          - id: after
            type: cmd
            command: touch after-ran
    """,
    )
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    waiting = start_run(wf, tmp_path, env)
    try:
        assert waiting.stdout is not None
        run_id = json.loads(waiting.stdout.readline())["run_id"]
        wait_for(lambda: (tmp_path / "child.pid").exists(), what="the step to start")
        child = int((tmp_path / "child.pid").read_text())

        result = bcce("workflow", "cancel", run_id, "--reason", "wrong branch", env=env)
        assert result.code == 0, result.err
        assert waiting.wait(30) == 5
    finally:
        waiting.kill()
    wait_for(lambda: _gone(child), timeout=10, what="the step's process group to be killed")
    data = status(workers.broker_url, run_id)
    assert data["status"] == "cancelled"
    assert "wrong branch" in data["error"]
    assert [s["status"] for s in data["steps"]] == ["cancelled", "pending"]
    assert not (tmp_path / "after-ran").exists()
    state = json.loads((Path(data["run_dir"]) / "run-state.json").read_text())
    assert state["status"] == "cancelled"

    again = bcce("workflow", "cancel", run_id, env=env)
    assert again.code == 2
    assert "already ended (cancelled)" in again.err


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_resume_continues_from_the_failed_step_without_running_earlier_steps_again(
    workers: Workers, tmp_path: Path
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: resumable
        steps:
          - id: prepare
            type: cmd
            shell: true
            command: echo once >> prepared
          - id: check
            type: cmd
            command: test -f ok-to-pass
          - id: report
            type: cmd
            command: echo done
    """,
    )
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    first = bcce("workflow", "run", str(wf), "--workspace", str(tmp_path), "--json", env=env)
    assert first.code == 1
    run_id = json.loads(first.out.splitlines()[0])["run_id"]

    (tmp_path / "ok-to-pass").touch()
    resumed = bcce("workflow", "resume", run_id, "--json", env=env)
    assert resumed.code == 0, resumed.out + resumed.err
    lines = [json.loads(line) for line in resumed.out.splitlines()]
    assert lines[0] == {"type": "run.resumed", "run_id": run_id, "step": "check"}
    steps = {s["id"]: s for s in lines[-1]["steps"]}
    assert steps["prepare"]["attempts"] == 1
    assert steps["check"]["attempts"] == 2
    assert steps["report"]["status"] == "succeeded"
    assert (tmp_path / "prepared").read_text() == "once\n"
    assert lines[-1]["status"] == "succeeded"

    done = bcce("workflow", "resume", run_id, env=env)
    assert done.code == 2
    assert "succeeded: there is nothing to resume" in done.err


def test_resume_from_a_named_step_runs_it_again(workers: Workers, tmp_path: Path) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: again
        steps:
          - id: count
            type: cmd
            shell: true
            command: echo x >> counted
          - id: fail
            type: cmd
            command: "false"
    """,
    )
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    first = bcce("workflow", "run", str(wf), "--workspace", str(tmp_path), "--json", env=env)
    assert first.code == 1
    run_id = json.loads(first.out.splitlines()[0])["run_id"]
    again = bcce("workflow", "resume", run_id, "--from", "count", env=env)
    assert again.code == 1
    assert (tmp_path / "counted").read_text() == "x\nx\n"
    missing = bcce("workflow", "resume", run_id, "--from", "nope", env=env)
    assert missing.code == 2
    assert "has no step 'nope'" in missing.err


def test_waiting_ends_with_exit_7_when_no_worker_is_left_for_the_next_step(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(7)
    redis.Redis.from_url(url).flushdb()
    pool = Workers(url, tmp_path)
    env = base_env(BCCE_BROKER_URL=url, BCCE_STALL_CHECK_SECONDS="2")
    try:
        pool.start(["policy"], env=env)  # the gate passes, but nobody runs cmd steps
        wf = write(
            tmp_path,
            """
            version: 1
            workflow: stranded
            steps:
              - id: one
                type: cmd
                command: "true"
        """,
        )
        result = bcce(
            "workflow",
            "run",
            str(wf),
            "--workspace",
            str(tmp_path),
            "--no-worker-check",
            env=env,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        pool.stop()
    assert result.code == 7
    assert "no live worker consumes 'command'" in result.err
