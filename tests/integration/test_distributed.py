"""Workflows through the CLI, a real Redis broker and real ``bcce worker`` processes."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import EXAMPLES, Workers, base_env, bcce, wait_for

pytestmark = pytest.mark.integration


def write(tmp_path: Path, text: str, name: str = "wf.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(workers: Workers, tmp_path: Path, wf: Path, *extra: str):  # type: ignore[no-untyped-def]
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    return bcce(
        "workflow", "run", str(wf), "--workspace", str(tmp_path), *extra, env=env, cwd=tmp_path
    )


def status(workers: Workers, run_id: str) -> dict:  # type: ignore[type-arg]
    result = bcce(
        "workflow", "status", run_id, "--json", env=base_env(BCCE_BROKER_URL=workers.broker_url)
    )
    return json.loads(result.out)


def summary_of(out: str) -> dict:  # type: ignore[type-arg]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return next(x for x in lines if x.get("type") == "run.summary")


def test_the_hello_example_runs_on_worker_processes_and_passes_output_on(
    workers: Workers, tmp_path: Path
) -> None:
    result = run(workers, tmp_path, EXAMPLES / "hello.yml", "--json")
    assert result.code == 0, result.err
    summary = summary_of(result.out)
    assert summary["status"] == "succeeded"
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["flaky_check"]["status"] == "failed"
    assert steps["flaky_check"]["continued"] is True
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "shout" / "output.txt").read_text() == "HELLO FROM BCCE\n"
    for name in ("stdout.txt", "stderr.txt", "output.txt", "policy.json", "metrics.json"):
        assert (run_dir / "greet" / name).is_file(), name
    state = json.loads((run_dir / "run-state.json").read_text())
    assert state["status"] == "succeeded"
    assert [s["status"] for s in state["steps"]] == [
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
    ]
    refs = steps["greet"]["artifacts"]
    assert set(refs) == {"stdout.txt", "stderr.txt", "output.txt", "policy.json", "metrics.json"}
    assert Path(refs["output.txt"]).read_text() == "hello from bcce\n"
    assert state["current_step"] is None  # finished
    # the same steps ran on the worker processes, not in the CLI
    metrics = json.loads((run_dir / "greet" / "metrics.json").read_text())
    assert metrics["worker"].startswith("command-")


def test_a_failing_step_stops_the_run_with_exit_1_and_later_steps_never_run(
    workers: Workers, tmp_path: Path
) -> None:
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
    result = run(workers, tmp_path, wf)
    assert result.code == 1, result.out + result.err
    assert "boom failed" in result.out
    assert not (tmp_path / "after-ran").exists()
    run_id = result.out.split()[1]
    data = status(workers, run_id)
    assert data["status"] == "failed"
    assert data["steps"][0]["exit_code"] == 3
    assert data["steps"][1]["status"] == "pending"
    assert (Path(data["run_dir"]) / "boom" / "stdout.txt").read_text() == "partial\n"


def test_a_command_outside_the_allowlist_is_denied_with_exit_3_before_it_runs(
    workers: Workers, tmp_path: Path
) -> None:
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
              cmd_allowlist: [echo, "git status"]
    """,
    )
    result = run(workers, tmp_path, wf, "--json")
    assert result.code == 3
    summary = summary_of(result.out)
    assert summary["status"] == "denied"
    assert "cmd_allowlist" in summary["error"]
    assert not (tmp_path / "pwned").exists()
    decision = json.loads((Path(summary["run_dir"]) / "sneaky" / "policy.json").read_text())
    assert decision["allowed"] is False and decision["rule"] == "cmd_allowlist"


def test_on_error_retry_runs_the_step_again_until_it_succeeds(
    workers: Workers, tmp_path: Path
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: flaky
        steps:
          - id: third_time_lucky
            type: cmd
            shell: true
            command: echo x >> tries; test $(wc -l < tries) -ge 2
            on_error: retry
            retries: 3
    """,
    )
    result = run(workers, tmp_path, wf, "--json")
    assert result.code == 0, result.out + result.err
    step = summary_of(result.out)["steps"][0]
    assert step["attempts"] == 2
    assert (tmp_path / "tries").read_text().count("x") == 2


def test_a_step_over_its_timeout_is_killed_with_its_children_and_fails(
    workers: Workers, tmp_path: Path
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: slow
        steps:
          - id: sleepy
            type: cmd
            shell: true
            command: sleep 60 & echo $! > child.pid; wait
            policy:
              timeout_seconds: 1
    """,
    )
    started = time.monotonic()
    result = run(workers, tmp_path, wf, "--json")
    assert result.code == 1
    assert time.monotonic() - started < 30
    step = summary_of(result.out)["steps"][0]
    assert step["status"] == "timed_out"
    assert "timed out after 1s" in step["error"]
    child = int((tmp_path / "child.pid").read_text())
    assert (
        not Path(f"/proc/{child}").exists()
        or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    )


def test_the_run_deadline_ends_a_run_that_overruns_with_exit_7(
    workers: Workers, tmp_path: Path
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: overrun
        env:
          max_runtime_seconds: 2
        steps:
          - id: long
            type: cmd
            command: sleep 30
    """,
    )
    result = run(workers, tmp_path, wf, "--json")
    assert result.code == 7
    summary = summary_of(result.out)
    assert summary["status"] == "timed_out"
    assert summary["steps"][0]["status"] == "timed_out"


def test_no_wait_prints_the_run_id_and_status_and_list_find_it(
    workers: Workers, tmp_path: Path
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: background
        steps:
          - id: one
            type: cmd
            command: echo ${WHO}
    """,
    )
    result = run(workers, tmp_path, wf, "--no-wait", "--var", "WHO=ci")
    assert result.code == 0, result.err
    run_id = result.out.strip()
    assert len(run_id) == len("2026-11-26T14-03-07-a1b2c3")
    wait_for(lambda: status(workers, run_id)["status"] == "succeeded", what="the run")
    data = status(workers, run_id)
    assert (Path(data["run_dir"]) / "one" / "output.txt").read_text() == "ci\n"
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    listed = bcce("workflow", "list", "--status", "succeeded", "--json", "--limit", "1000", env=env)
    assert run_id in {json.loads(line)["id"] for line in listed.out.splitlines()}
    failed = bcce("workflow", "list", "--status", "failed", "--json", "--limit", "1000", env=env)
    assert run_id not in failed.out


def test_a_redelivered_step_that_already_succeeded_is_not_run_again(
    workers: Workers, tmp_path: Path
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: once
        steps:
          - id: append
            type: cmd
            shell: true
            command: echo ran >> side-effect
    """,
    )
    result = run(workers, tmp_path, wf, "--json")
    assert result.code == 0
    run_id = summary_of(result.out)["run_id"]
    from bcce.celery_app import make_app
    from bcce.settings import Settings
    from bcce.steptypes import registry

    app = make_app(Settings(broker_url=workers.broker_url), registry())
    app.send_task("bcce.step.cmd", args=(run_id, "append"), queue="command")
    wait_for(
        lambda: (
            status(workers, run_id)["steps"][0].get("attempts") == 1
            and _redeliveries(workers, run_id) == 1
        ),
        what="the redelivery to be seen",
    )
    assert (tmp_path / "side-effect").read_text() == "ran\n"


def _redeliveries(workers: Workers, run_id: str) -> int:
    client = redis.Redis.from_url(workers.broker_url, decode_responses=True)
    raw = client.hget(f"bcce:run:{run_id}:steps", "append")
    return int(json.loads(raw or "{}").get("redeliveries", 0))


def test_run_exits_7_naming_the_pool_when_no_worker_consumes_it(
    redis_server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    wf = write(
        tmp_path,
        """
        version: 1
        workflow: lonely
        steps:
          - id: one
            type: cmd
            command: "true"
    """,
    )
    env = base_env(BCCE_BROKER_URL=redis_server.url(5))
    result = bcce("workflow", "run", str(wf), env=env, cwd=tmp_path)
    assert result.code == 7
    assert "no live worker consumes 'policy', 'command'" in result.err
    assert "bcce worker --pool policy --pool command" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_dead_broker_fails_fast_with_exit_7_and_one_line(tmp_path: Path) -> None:
    env = base_env(BCCE_BROKER_URL="redis://127.0.0.1:1/0")
    started = time.monotonic()
    result = bcce("workflow", "run", str(EXAMPLES / "hello.yml"), env=env, cwd=tmp_path)
    assert result.code == 7
    assert time.monotonic() - started < 20
    assert result.err.startswith("bcce: cannot reach Redis at redis://127.0.0.1:1/0")
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / ".bcce_runs").exists()


def test_celerys_own_worker_command_serves_bcce_queues(
    redis_server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    import sys

    url = redis_server.url(6)
    pool = Workers(url, tmp_path)
    env = base_env(BCCE_BROKER_URL=url)
    try:
        pool.start(
            ["policy", "command"],
            env=env,
            argv=[
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "worker",
                "-Q",
                "policy,command",
                "-c",
                "1",
                "--loglevel",
                "info",
                "-n",
                "celery-cli@%h",
            ],
        )
        result = bcce(
            "workflow",
            "run",
            str(EXAMPLES / "hello.yml"),
            "--workspace",
            str(tmp_path),
            env=env,
            cwd=tmp_path,
        )
        assert result.code == 0, result.out + result.err
    finally:
        pool.stop()


def test_a_task_that_crashes_ends_its_run_as_failed_instead_of_leaving_it_running(
    workers: Workers, tmp_path: Path
) -> None:
    # A workflow naming a step type this worker does not have (a plugin installed only on
    # the submitting host) makes the gate crash while loading the snapshot.
    from bcce.celery_app import make_app
    from bcce.records import RunRecord, RunStatus, StepRecord, new_run_id
    from bcce.settings import Settings
    from bcce.state import RunStore
    from bcce.steptypes import registry

    store = RunStore.from_url(workers.broker_url, 3600)
    run_id = new_run_id()
    run = RunRecord(
        id=run_id,
        workflow="w",
        status=RunStatus.QUEUED,
        created_at=time.time(),
        workspace=str(tmp_path),
        run_dir=str(tmp_path / "run"),
        step_ids=["one"],
    )
    snapshot = {
        "version": 1,
        "workflow": "w",
        "steps": [{"id": "one", "type": "not_installed_here"}],
    }
    store.create(run, snapshot, [StepRecord(id="one", type="not_installed_here", queue="x")])
    app = make_app(Settings(broker_url=workers.broker_url), registry())
    app.send_task("bcce.policy.check", args=(run_id, "one"), queue="policy")
    wait_for(lambda: store.run(run_id).status.terminal, what="the run to end")
    ended = store.run(run_id)
    assert ended.status == RunStatus.FAILED
    assert "bcce.policy.check crashed" in (ended.error or "")
    assert "not_installed_here" in (ended.error or "")


def test_run_writes_a_junit_report_that_ci_reads_as_one_failure_and_one_skip(
    workers: Workers, tmp_path: Path
) -> None:
    import xml.etree.ElementTree as ET

    wf = write(
        tmp_path,
        """
        version: 1
        workflow: reported
        steps:
          - id: fine
            type: cmd
            command: "true"
          - id: broken
            type: cmd
            command: "false"
          - id: never
            type: cmd
            command: "true"
    """,
    )
    report = tmp_path / "reports" / "bcce.xml"
    summary_file = tmp_path / "reports" / "summary.json"
    result = run(workers, tmp_path, wf, "--junit", str(report), "--summary-json", str(summary_file))
    assert result.code == 1
    written = json.loads(summary_file.read_text())
    assert (written["status"], written["exit_code"]) == ("failed", 1)
    assert [s["status"] for s in written["steps"]] == ["succeeded", "failed", "pending"]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["broken"].find("failure") is not None
    assert cases["never"].find("skipped") is not None
    no_wait = run(workers, tmp_path, wf, "--junit", str(report), "--no-wait")
    assert no_wait.code == 2
