"""A step-type plugin (examples/plugins/bcce-echo), installed into a private folder only.

The plugin is pip-installed with ``--target`` into a temporary directory and reaches the CLI
and the worker processes through ``PYTHONPATH``, so the environment running the tests is
never changed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import redis

from tests.conftest import EXAMPLES, RedisServer, Workers, base_env, bcce

pytestmark = pytest.mark.integration

PLUGIN_SRC = EXAMPLES / "plugins" / "bcce-echo"
ECHO_WORKFLOW = PLUGIN_SRC / "echo.yml"
ECHO_DB = 9  # no other test uses this database


def _offline_build() -> bool:
    """Whether this interpreter's setuptools can build a wheel without fetching anything."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    major, minor = (int(p) for p in version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1)  # bdist_wheel moved into setuptools in 70.1


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed bcce-echo distribution, for PYTHONPATH."""
    base = tmp_path_factory.mktemp("bcce-echo")
    # pip builds in the source tree; a copy keeps build/ and *.egg-info out of the repo.
    src = shutil.copytree(PLUGIN_SRC, base / "src")
    site = base / "site"
    # Without `wheel` (setuptools < 70.1) a build needs pip's isolated build environment.
    isolation = ["--no-build-isolation"] if _offline_build() else []
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *isolation]
    proc = subprocess.run(
        [*cmd, "--quiet", "--target", str(site), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "bcce_echo-0.1.0.dist-info").is_dir()
    return site


def plugin_env(site: Path, **extra: str) -> dict[str, str]:
    """A bcce subprocess environment that finds the plugin."""
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return base_env(PYTHONPATH=os.pathsep.join(paths), **extra)


def test_plugin_list_shows_the_echo_step_type_beside_the_built_ins(plugin_site: Path) -> None:
    result = bcce("plugin", "list", "--json", env=plugin_env(plugin_site))
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.splitlines()]
    types = {r["name"]: r for r in rows if r["kind"] == "step type"}
    assert {"cmd", "agent", "prompt", "apply_diff", "echo"} <= set(types)
    echo = types["echo"]
    assert (echo["package"], echo["version"]) == ("bcce-echo", "0.1.0")
    assert (echo["queue"], echo["task"], echo["runnable"]) == ("echo", "bcce.step.echo", True)
    assert types["cmd"]["package"] == "bcce"
    stores = {r["name"]: r for r in rows if r["kind"] == "artifact store"}
    assert stores["file"]["package"] == "bcce"


def test_without_the_plugin_an_echo_step_is_an_unknown_type(tmp_path: Path) -> None:
    result = bcce("workflow", "validate", str(ECHO_WORKFLOW), cwd=tmp_path)
    assert result.code == 2
    assert "unknown step type 'echo'" in result.err


def test_validate_accepts_the_echo_example_workflow(plugin_site: Path) -> None:
    result = bcce("workflow", "validate", str(ECHO_WORKFLOW), env=plugin_env(plugin_site))
    assert result.code == 0, result.err
    assert "ok ('Echo plugin demo', 2 steps)" in result.out


def test_validate_reports_every_bad_echo_step_with_its_place(
    plugin_site: Path, tmp_path: Path
) -> None:
    wf = tmp_path / "bad.yml"
    wf.write_text(
        textwrap.dedent(
            """\
            version: 1
            workflow: bad echoes
            steps:
              - id: typo
                type: echo
                mesage: hi
              - id: silent
                type: echo
              - id: loud
                type: echo
                message: hi
                repeat: 0
            """
        ),
        encoding="utf-8",
    )
    result = bcce("workflow", "validate", str(wf), env=plugin_env(plugin_site), cwd=tmp_path)
    assert result.code == 2
    err = result.err
    assert "steps[0].mesage: unknown key 'mesage' (did you mean 'message'?)" in err
    assert "bad.yml:7:" in err and "steps[1]: missing required key 'message'" in err
    assert "bad.yml:12:" in err and "steps[2].repeat:" in err
    # every problem at once, each on its own line, no traceback
    assert "Traceback" not in err
    assert all(line.startswith("bcce: ") for line in err.splitlines())


def test_validate_rejects_an_echo_template_naming_a_later_step(
    plugin_site: Path, tmp_path: Path
) -> None:
    wf = tmp_path / "order.yml"
    wf.write_text(
        textwrap.dedent(
            """\
            version: 1
            workflow: wrong order
            steps:
              - id: early
                type: echo
                message: "{{ steps.later.output }}"
              - id: later
                type: echo
                message: hi
            """
        ),
        encoding="utf-8",
    )
    result = bcce("workflow", "validate", str(wf), env=plugin_env(plugin_site), cwd=tmp_path)
    assert result.code == 2
    assert "template refers to 'later', which is a later step" in result.err


@pytest.fixture
def echo_db(redis_server: RedisServer) -> Iterator[str]:
    url = redis_server.url(ECHO_DB)
    redis.Redis.from_url(url).flushdb()
    yield url


def test_an_echo_step_runs_on_an_echo_worker_with_the_cmd_steps_output(
    plugin_site: Path, echo_db: str, tmp_path: Path
) -> None:
    env = plugin_env(plugin_site, BCCE_BROKER_URL=echo_db)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    pool = Workers(echo_db, tmp_path)
    try:
        pool.start(["policy"], env=env)
        pool.start(["command"], env=env)
        pool.start(["echo"], env=env)
        result = bcce(
            "workflow",
            "run",
            str(ECHO_WORKFLOW),
            "--json",
            "--workspace",
            str(workspace),
            env=env,
            cwd=workspace,
        )
        assert result.code == 0, result.out + result.err
        lines = [json.loads(line) for line in result.out.splitlines()]
        summary = lines[-1]
        assert summary["type"] == "run.summary" and summary["status"] == "succeeded"
        run_dir = Path(summary["run_dir"])
        step_dir = run_dir / "announce"
        expected = "hello from bcce plugins\n" * 2
        assert (step_dir / "output.txt").read_text() == expected
        assert (step_dir / "stdout.txt").read_text() == expected
        assert (step_dir / "stderr.txt").read_text() == ""
        metrics = json.loads((step_dir / "metrics.json").read_text())
        assert metrics["worker"].startswith("echo-")
        assert metrics["repeat"] == 2 and metrics["ok"] is True

        status = bcce("workflow", "status", summary["run_id"], "--json", env=env)
        assert status.code == 0, status.err
        steps = {s["id"]: s for s in json.loads(status.out)["steps"]}
        assert steps["announce"]["type"] == "echo"
        assert steps["announce"]["status"] == "succeeded"
        state = json.loads((run_dir / "run-state.json").read_text())
        workers = {s["id"]: (s["queue"], s["worker"]) for s in state["steps"]}
        assert workers["announce"][0] == "echo" and workers["announce"][1].startswith("echo-")
        assert workers["whoami"][0] == "command" and workers["whoami"][1].startswith("command-")
        echo_log = next(tmp_path.glob("worker-echo-*.log")).read_text()
        assert "bcce.step.echo" in echo_log
    finally:
        pool.stop()


def test_run_exits_7_naming_the_echo_pool_when_no_worker_consumes_it(
    plugin_site: Path, workers: Workers, tmp_path: Path
) -> None:
    # The session workers serve policy and command on their own database, but not echo.
    env = plugin_env(plugin_site, BCCE_BROKER_URL=workers.broker_url)
    result = bcce(
        "workflow",
        "run",
        str(ECHO_WORKFLOW),
        "--workspace",
        str(tmp_path),
        env=env,
        cwd=tmp_path,
    )
    assert result.code == 7, result.out + result.err
    assert "no live worker consumes 'echo'" in result.err
    assert "`bcce worker --pool echo`" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / ".bcce_runs").exists()
