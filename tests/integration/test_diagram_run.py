"""``bcce workflow diagram RUN_ID`` on runs that really ran: distributed and embedded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bcce.cli import Cli
from bcce.cli.diagram import command
from tests.conftest import Workers, base_env, bcce

pytestmark = pytest.mark.integration

WORKFLOW = """\
version: 1
workflow: "diagram <me>"
steps:
  - id: hello
    type: cmd
    command: echo hi
  - id: boom
    type: cmd
    command: sh -c "exit 3"
  - id: after
    type: cmd
    command: echo never
"""
COLOURED = (
    "  classDef succeeded fill:#c8e6c9,stroke:#2e7d32,color:#000\n"
    "  class step_hello succeeded\n"
    "  classDef failed fill:#ffcdd2,stroke:#c62828,color:#000\n"
    "  class step_boom failed\n"
    "  classDef pending fill:#e0e0e0,stroke:#757575,color:#000\n"
    "  class step_after pending\n"
)


@pytest.fixture(autouse=True)
def in_tmp_path_with_the_workflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The current directory holds wf.yml; embedded runs leave .bcce_runs/ there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wf.yml").write_text(WORKFLOW, encoding="utf-8")


def diagram(*args: str) -> Result:
    root = Cli("bcce")
    root.add_command(command)
    no_settings = {k: None for k in os.environ if k.startswith("BCCE_")}  # embedded by default
    return CliRunner(env=no_settings).invoke(root, ["diagram", *args], prog_name="bcce")


def run_id_of(out: str) -> str:
    first = out.splitlines()[0]
    assert first.startswith("run "), out
    return first.split()[1]


def test_a_distributed_run_is_drawn_from_the_run_store_with_each_step_status(
    workers: Workers, tmp_path: Path
) -> None:
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    ran = bcce("workflow", "run", "wf.yml", "--workspace", str(tmp_path), env=env, cwd=tmp_path)
    assert ran.code == 1, ran.out + ran.err
    run_id = run_id_of(ran.out)

    result = diagram(run_id, "--broker", workers.broker_url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith('---\ntitle: "diagram \\u003cme\\u003e"\n---\n')
    assert '    step_boom["boom<br>cmd on command<br>failed"]\n' in result.output
    assert result.output.endswith(COLOURED)

    written = diagram(run_id, "--broker", workers.broker_url, "-o", "run.dot")
    assert written.exit_code == 0, written.output
    text = (tmp_path / "run.dot").read_text(encoding="utf-8")
    assert 'label="diagram <me>";' in text
    assert 'fillcolor="#ffcdd2"' in text


def test_an_unknown_distributed_run_is_not_found_with_exit_2(workers: Workers) -> None:
    result = diagram("2020-01-01T00-00-00-000000", "--broker", workers.broker_url)
    assert result.exit_code == 2
    assert result.output.startswith("bcce: no run '2020-01-01T00-00-00-000000'")


def test_an_embedded_run_is_drawn_from_its_run_state_file(tmp_path: Path) -> None:
    ran = bcce("workflow", "run", "wf.yml", env=base_env(), cwd=tmp_path)
    assert ran.code == 1, ran.out + ran.err
    result = diagram(run_id_of(ran.out))
    assert result.exit_code == 0, result.output
    assert result.output.endswith(COLOURED)
