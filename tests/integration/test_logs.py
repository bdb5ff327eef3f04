"""``bcce logs`` against a real Redis broker and real ``bcce worker`` processes."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcce.artifacts import LocalArtifactStore
from bcce.cli import Cli
from bcce.cli.logs import logs as logs_command
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus
from bcce.state import RunStore
from tests.conftest import ROOT, Result, Workers, base_env, bcce

pytestmark = pytest.mark.integration

CHATTY = """
    version: 1
    workflow: chatty
    steps:
      - id: count
        type: cmd
        shell: true
        command: for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2
      - id: nap
        type: cmd
        command: sleep 2
      - id: wave
        type: cmd
        command: echo bye
"""

FAILS = """
    version: 1
    workflow: fails
    steps:
      - id: boom
        type: cmd
        command: sh -c "echo partial; echo why >&2; exit 3"
      - id: after
        type: cmd
        command: echo never
"""


def logs(*args: str, env: dict[str, str], cwd: Path = ROOT) -> Result:
    return bcce("workflow", "logs", *args, env=env, cwd=cwd)


def submit(workers: Workers, tmp_path: Path, text: str, *extra: str) -> Result:
    wf = tmp_path / "wf.yml"
    wf.write_text(textwrap.dedent(text), encoding="utf-8")
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    return bcce(
        "workflow", "run", str(wf), "--workspace", str(tmp_path), *extra, env=env, cwd=tmp_path
    )


def background(workers: Workers, tmp_path: Path, text: str) -> str:
    result = submit(workers, tmp_path, text, "--no-wait")
    assert result.code == 0, result.err
    return result.out.strip()


def position(lines: list[str], start: str) -> int:
    found = [i for i, line in enumerate(lines) if line.strip().startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def test_follow_streams_steps_in_order_with_their_output_and_ends_with_the_run(
    workers: Workers, tmp_path: Path
) -> None:
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    run_id = background(workers, tmp_path, CHATTY)
    store = RunStore.from_url(workers.broker_url, 3600)
    assert not store.run(run_id).status.terminal  # so --follow has something to wait for

    result = logs(run_id, "--follow", env=env)

    assert result.code == 0, result.out + result.err
    assert store.run(run_id).status.value == "succeeded"
    lines = result.out.splitlines()
    assert lines[0].startswith(f"run {run_id} (chatty, 3 steps, distributed)")
    order = [
        "count started (attempt 1",
        "count succeeded in",
        "[count] line-1",
        "[count] line-5",
        "nap started (attempt 1",
        "nap succeeded in",
        "wave started (attempt 1",
        "wave succeeded in",
        "[wave] bye",
    ]
    assert [position(lines, s) for s in order] == sorted(position(lines, s) for s in order)
    assert lines[-1].startswith(f"run {run_id} succeeded in ")
    assert lines[-1].endswith("(exit 0)")
    assert "[count] oops" in result.err.splitlines()


def test_step_shows_only_that_steps_events_and_the_last_lines_of_its_output(
    workers: Workers, tmp_path: Path
) -> None:
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    run_id = background(workers, tmp_path, CHATTY)
    assert logs(run_id, "-f", "--no-output", env=env).code == 0

    result = logs(run_id, "--step", "count", "--lines", "2", env=env)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].strip().startswith("count started")
    assert lines[1].strip().startswith("count succeeded")
    assert lines[2].startswith("[count] ... 3 earlier lines in ")
    assert lines[2].endswith("count/stdout.txt")
    assert lines[3:5] == ["[count] line-4", "[count] line-5"]
    assert lines[-1].startswith(f"run {run_id} succeeded")
    assert len(lines) == 6
    assert "nap" not in result.out and "wave" not in result.out

    unknown = logs(run_id, "--step", "nope", env=env)
    assert unknown.code == 2
    assert unknown.err.strip() == f"bcce: run {run_id} has no step 'nope'; steps: count, nap, wave"


def test_json_prints_each_event_as_a_json_line_with_the_steps_output(
    workers: Workers, tmp_path: Path
) -> None:
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    run_id = background(workers, tmp_path, CHATTY)

    result = logs(run_id, "--follow", "--json", env=env)

    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run.submitted"
    assert kinds[-2:] == ["run.finished", "run.summary"]
    assert [e["step"] for e in events if e["type"] == "step.started"] == ["count", "nap", "wave"]
    outputs = {(e["step"], e["stream"]): e for e in events if e["type"] == "step.output"}
    assert outputs[("count", "stdout")]["lines"] == [f"line-{i}" for i in range(1, 6)]
    assert outputs[("count", "stderr")]["lines"] == ["oops"]
    assert outputs[("count", "stdout")]["omitted"] == 0
    assert events[-1]["run_id"] == run_id and events[-1]["exit_code"] == 0


def test_the_logs_of_a_failed_run_exit_1_and_show_why(workers: Workers, tmp_path: Path) -> None:
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    ran = submit(workers, tmp_path, FAILS)
    assert ran.code == 1, ran.out + ran.err
    run_id = ran.out.split()[1]

    result = logs(run_id, env=env)

    assert result.code == 1
    assert "boom failed in " in result.out and "(exit 3)" in result.out
    assert "[boom] partial" in result.out.splitlines()
    assert result.err.splitlines() == ["[boom] why"]
    assert "after started" not in result.out
    assert result.out.splitlines()[-1].endswith("(exit 1)")
    assert logs(run_id, "--follow", "--no-output", env=env).code == 1


def test_without_follow_a_running_run_prints_what_there_is_and_exits_0(
    workers: Workers, tmp_path: Path
) -> None:
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    run_id = background(
        workers,
        tmp_path,
        """
        version: 1
        workflow: slow
        steps:
          - id: long
            type: cmd
            command: sleep 4
        """,
    )

    result = logs(run_id, env=env)

    assert result.code == 0, result.err
    assert result.out.splitlines()[0].startswith(f"run {run_id} (slow, 1 steps, distributed)")
    assert "long succeeded" not in result.out
    assert logs(run_id, "--follow", env=env).code == 0


def test_an_unknown_run_exits_2_with_one_line(workers: Workers) -> None:
    result = logs("2026-01-01T00-00-00-000000", env=base_env(BCCE_BROKER_URL=workers.broker_url))
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        "bcce: no run '2026-01-01T00-00-00-000000' in the run store (it may have expired)"
    ]


def test_an_embedded_run_shows_the_events_rebuilt_from_its_run_state(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yml"
    wf.write_text(textwrap.dedent(FAILS), encoding="utf-8")
    ran = bcce("workflow", "run", str(wf), env=base_env(), cwd=tmp_path)
    assert ran.code == 1, ran.out + ran.err
    run_id = ran.out.split()[1]

    result = logs(run_id, env=base_env(), cwd=tmp_path)

    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0].startswith(f"run {run_id} (fails, 2 steps, embedded)")
    assert lines[1].strip().startswith("boom started (attempt 1, command@embedded-")
    assert lines[2].strip().startswith("boom failed in ")
    assert lines[3] == "[boom] partial"
    assert lines[-1].startswith(f"run {run_id} failed")
    events = [
        json.loads(line)
        for line in logs(run_id, "--json", env=base_env(), cwd=tmp_path).out.splitlines()
    ]
    assert {e["type"] for e in events if not e.get("rebuilt")} == {"step.output", "run.summary"}
    assert logs(run_id, "--follow", env=base_env(), cwd=tmp_path).code == 1


def test_an_embedded_run_that_has_not_ended_prints_its_steps_but_cannot_be_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("BCCE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / ".bcce_runs" / "r1"
    (run_dir / "flaky").mkdir(parents=True)
    (run_dir / "flaky" / "stdout.txt").write_text("try 1\n", encoding="utf-8")
    now = time.time()
    run = RunRecord(
        id="r1",
        workflow="w",
        status=RunStatus.RUNNING,
        created_at=now,
        workspace=str(tmp_path),
        run_dir=str(run_dir),
        step_ids=["flaky", "next"],
    )
    flaky = StepRecord(
        id="flaky",
        type="cmd",
        queue="command",
        status=StepStatus.RETRYING,
        attempts=1,
        started_at=now,
        finished_at=now + 1,
        duration_seconds=1.0,
        exit_code=1,
        worker="command@embedded-1",
        artifacts={"stdout.txt": str(run_dir / "flaky" / "stdout.txt")},
    )
    LocalArtifactStore(run_dir).mirror(run, [flaky, StepRecord(id="next", type="cmd", queue="c")])
    cli = Cli()
    cli.add_command(logs_command)

    shown = CliRunner().invoke(cli, ["logs", "r1"])
    assert shown.exit_code == 0, shown.output
    assert "flaky started (attempt 1, command@embedded-1)" in shown.output
    assert "flaky failed in 1.0s (exit 1), will retry" in shown.output
    assert "[flaky] try 1" not in shown.output  # output is shown once a step finished
    assert "next" not in shown.output

    followed = CliRunner().invoke(cli, ["logs", "r1", "--follow"])
    assert followed.exit_code == 2
    assert "cannot be followed from another process" in followed.output
