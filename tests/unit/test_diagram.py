"""Tests for bcce.diagram and ``bcce workflow diagram`` on files and embedded runs."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bcce import policy
from bcce.artifacts import LocalArtifactStore
from bcce.cli import Cli
from bcce.cli.diagram import command
from bcce.compiler import Plan, compile_plan
from bcce.diagram import Chart, Node, dot, format_for, mermaid
from bcce.errors import UsageError
from bcce.loader import from_snapshot
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus
from bcce.steptypes import registry

LIMITS = policy.Limits(default_timeout_seconds=1800, max_timeout_seconds=3600)
RUN_ID = "2026-11-26T14-03-07-a1b2c3"
NASTY = '"a" <b> [c] {d}\nnext line'
TWO_STEPS = [
    {"id": "build", "type": "cmd", "command": "make"},
    {"id": "review", "type": "prompt", "prompt": "review it"},
]
WORKFLOW_FILE = """\
version: 1
workflow: two steps
steps:
  - id: build
    type: cmd
    command: make
  - id: review
    type: prompt
    prompt: review it
"""

MERMAID_TWO_STEPS = """\
---
title: "two steps"
---
flowchart LR
  subgraph pool_policy["policy"]
    gate_build{{"gate<br>build"}}
    gate_review{{"gate<br>review"}}
  end
  subgraph pool_command["command"]
    step_build["build<br>cmd on command"]
  end
  subgraph pool_agent["agent"]
    step_review["review<br>prompt on agent"]
  end
  gate_build --> step_build
  step_build --> gate_review
  gate_review --> step_review
"""

DOT_TWO_STEPS = """\
digraph bcce {
  label="two steps";
  labelloc=t;
  rankdir=LR;
  node [shape=box];
  subgraph cluster_pool_policy {
    label="policy";
    gate_build [label="gate\\nbuild", shape=hexagon];
    gate_review [label="gate\\nreview", shape=hexagon];
  }
  subgraph cluster_pool_command {
    label="command";
    step_build [label="build\\ncmd on command"];
  }
  subgraph cluster_pool_agent {
    label="agent";
    step_review [label="review\\nprompt on agent"];
  }
  gate_build -> step_build;
  step_build -> gate_review;
  gate_review -> step_review;
}
"""


def plan_of(steps: list[dict[str, Any]], name: str = "two steps") -> Plan:
    workflow = from_snapshot({"version": 1, "workflow": name, "steps": steps}, registry())
    return compile_plan(workflow, registry(), LIMITS, RUN_ID)


@pytest.fixture(autouse=True)
def in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Runs in an empty directory, where embedded runs leave .bcce_runs/."""
    monkeypatch.chdir(tmp_path)


def diagram(*args: str) -> Result:
    """The command as it is registered: under bcce's group, which reports BcceError."""
    root = Cli("bcce")
    root.add_command(command)
    no_settings = {k: None for k in os.environ if k.startswith("BCCE_")}  # embedded by default
    return CliRunner(env=no_settings).invoke(root, ["diagram", *args], prog_name="bcce")


# drawing


def test_a_plan_is_drawn_in_mermaid_as_gates_and_steps_grouped_by_pool_in_chain_order() -> None:
    assert mermaid(plan_of(TWO_STEPS)) == MERMAID_TWO_STEPS


def test_a_plan_is_drawn_in_dot_as_gates_and_steps_in_clusters_in_chain_order() -> None:
    assert dot(plan_of(TWO_STEPS)) == DOT_TWO_STEPS


def test_a_run_drawn_from_its_step_records_matches_the_plan_of_its_workflow() -> None:
    records = [StepRecord(id="build", type="cmd", queue="command")]
    records.append(StepRecord(id="review", type="prompt", queue="agent"))
    chart = Chart.of("two steps", records)
    assert mermaid(chart) == MERMAID_TWO_STEPS
    assert dot(chart) == DOT_TWO_STEPS


def test_a_run_shows_each_status_as_text_and_a_colour_class() -> None:
    statuses = {"build": "succeeded", "review": "failed"}
    text = mermaid(plan_of(TWO_STEPS), statuses)
    assert '    step_build["build<br>cmd on command<br>succeeded"]\n' in text
    assert text.endswith(
        "  classDef succeeded fill:#c8e6c9,stroke:#2e7d32,color:#000\n"
        "  class step_build succeeded\n"
        "  classDef failed fill:#ffcdd2,stroke:#c62828,color:#000\n"
        "  class step_review failed\n"
    )
    assert '    gate_build{{"gate<br>build"}}\n' in text  # gates are not coloured


@pytest.mark.parametrize(
    ("status", "fill", "border"),
    [
        (StepStatus.SUCCEEDED, "#c8e6c9", "#2e7d32"),  # green
        (StepStatus.FAILED, "#ffcdd2", "#c62828"),  # red
        (StepStatus.TIMED_OUT, "#ffcdd2", "#c62828"),
        (StepStatus.DENIED, "#f8c8f8", "#a000a0"),  # magenta
        (StepStatus.CANCELLED, "#e0e0e0", "#757575"),  # grey
        (StepStatus.PENDING, "#e0e0e0", "#757575"),
        (StepStatus.RUNNING, "#b2ebf2", "#00838f"),  # cyan
    ],
)
def test_each_step_status_has_its_colour_in_both_languages(
    status: StepStatus, fill: str, border: str
) -> None:
    plan = plan_of(TWO_STEPS)
    assert (
        f'    step_review [label="review\\nprompt on agent\\n{status.value}", '
        f'style=filled, fillcolor="{fill}", color="{border}"];\n'
    ) in dot(plan, {"review": status.value})
    assert f"  classDef {status.value} fill:{fill},stroke:{border},color:#000\n" in mermaid(
        plan, {"review": status.value}
    )


def test_a_status_without_a_colour_is_shown_as_text_only() -> None:
    plan = plan_of(TWO_STEPS)
    assert "classDef" not in mermaid(plan, {"build": "paused"})
    assert 'step_build [label="build\\ncmd on command\\npaused"];' in dot(plan, {"build": "paused"})


def test_a_nasty_workflow_name_is_escaped_in_mermaid_front_matter() -> None:
    text = mermaid(plan_of(TWO_STEPS, NASTY))
    assert text.startswith('---\ntitle: "\\"a\\" \\u003cb\\u003e [c] {d}\\nnext line"\n---\n')


def test_a_nasty_workflow_name_is_a_plain_quoted_dot_label() -> None:
    text = dot(plan_of(TWO_STEPS, NASTY))
    assert '  label="\\"a\\" <b> [c] {d}\\nnext line";\n' in text


def test_nasty_types_and_queues_are_escaped_in_labels_and_never_reach_identifiers() -> None:
    chart = Chart(NASTY, (Node("end", "t#1;", NASTY), Node("x", "%%{init}%%", "a\\N")))
    text = mermaid(chart)
    assert (
        '  subgraph pool__a___b___c___d__next_line["#34;a#34; #60;b#62; [c] {d}<br>next line"]\n'
    ) in text
    assert '    step_x["x<br>#37;#37;{init}#37;#37; on a\\N"]\n' in text
    assert '    step_end["end<br>t#35;1; on #34;a#34; #60;b#62; [c] {d}<br>next line"]' in text
    assert '    step_x [label="x\\n%%{init}%% on a\\\\N"];\n' in dot(chart)
    mermaid_ids = re.findall(r"^(?:    |  subgraph )(\S+?)(?:\[|\{\{)", text, re.MULTILINE)
    dot_ids = re.findall(r"^(?:    |  subgraph )(\S+?) [\[{]", dot(chart), re.MULTILINE)
    assert len(mermaid_ids) == len(dot_ids) == 7  # three pools, two gates, two steps
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", i) for i in mermaid_ids + dot_ids)


def test_queues_that_reduce_to_one_identifier_get_distinct_clusters() -> None:
    chart = Chart("w", (Node("a", "cmd", "x-y"), Node("b", "cmd", "x.y")))
    text = dot(chart)
    assert "  subgraph cluster_pool_x_y {\n" in text
    assert "  subgraph cluster_pool_x_y_2 {\n" in text


# choosing the language


@pytest.mark.parametrize(
    ("output", "requested", "language"),
    [
        (None, None, "mermaid"),
        (None, "dot", "dot"),
        ("chart.mmd", None, "mermaid"),
        ("chart.mermaid", None, "mermaid"),
        ("chart.dot", None, "dot"),
        ("chart.GV", None, "dot"),
        ("chart.dot", "dot", "dot"),
        ("chart.txt", "dot", "dot"),
        ("chart", None, "mermaid"),
    ],
)
def test_the_language_follows_the_output_extension_then_the_flag_then_mermaid(
    output: str | None, requested: str | None, language: str
) -> None:
    assert format_for(PurePath(output) if output else None, requested) == language


@pytest.mark.parametrize("requested", [None, "dot", "mermaid"])
@pytest.mark.parametrize("name", ["chart.png", "chart.svg"])
def test_an_image_output_is_refused_with_how_to_render_one(name: str, requested: str) -> None:
    with pytest.raises(UsageError) as caught:
        format_for(PurePath(name), requested)
    message = str(caught.value)
    assert "\n" not in message
    assert "mmdc -i chart.mmd" in message
    assert f"dot -T{name[-3:]} chart.dot -o {name}" in message


def test_a_flag_contradicting_the_extension_is_refused() -> None:
    with pytest.raises(UsageError, match=r"--format dot does not match chart\.mmd"):
        format_for(PurePath("chart.mmd"), "dot")


def test_an_extension_naming_no_diagram_language_is_refused() -> None:
    with pytest.raises(UsageError, match=r"cannot tell the diagram format of wf\.yml"):
        format_for(PurePath("wf.yml"), None)


# the command


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    path = tmp_path / "wf.yml"
    path.write_text(WORKFLOW_FILE, encoding="utf-8")
    return path


def test_a_workflow_file_is_drawn_in_mermaid_on_stdout_by_default(wf: Path) -> None:
    result = diagram(str(wf))
    assert result.exit_code == 0, result.output
    assert result.output == MERMAID_TWO_STEPS


def test_the_format_flag_draws_dot_on_stdout(wf: Path) -> None:
    assert diagram(str(wf), "--format", "dot").output == DOT_TWO_STEPS


@pytest.mark.parametrize(
    ("name", "expected"), [("out/c.mmd", MERMAID_TWO_STEPS), ("c.dot", DOT_TWO_STEPS)]
)
def test_the_output_file_gets_the_language_of_its_extension_and_its_path_is_printed(
    wf: Path, tmp_path: Path, name: str, expected: str
) -> None:
    result = diagram(str(wf), "--output", name)
    assert result.exit_code == 0, result.output
    assert result.output == f"{name}\n"
    assert (tmp_path / name).read_text(encoding="utf-8") == expected


def test_a_png_output_is_a_one_line_usage_error_and_writes_nothing(
    wf: Path, tmp_path: Path
) -> None:
    result = diagram(str(wf), "-o", "c.png", "--format", "dot")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "dot -Tpng c.dot -o c.png" in result.output
    assert list(tmp_path.iterdir()) == [wf]


def test_an_unset_variable_is_reported_and_can_be_given_with_var(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text(WORKFLOW_FILE.replace("make", "make ${TARGET}"), encoding="utf-8")
    assert diagram(str(path)).exit_code == 2
    assert diagram(str(path), "--var", "TARGET=all").output == MERMAID_TWO_STEPS


def test_a_missing_file_is_not_mistaken_for_a_run_id() -> None:
    result = diagram("missing.yml")
    assert result.exit_code == 2
    assert result.output == "bcce: no workflow file missing.yml (nor is it a run id)\n"


def test_an_unknown_embedded_run_is_not_found_with_exit_2() -> None:
    result = diagram(RUN_ID)
    assert result.exit_code == 2
    assert f"no run {RUN_ID!r} in .bcce_runs/" in result.output


def test_an_embedded_run_is_drawn_from_its_run_state_with_step_statuses(tmp_path: Path) -> None:
    run_dir = tmp_path / ".bcce_runs" / RUN_ID
    run = RunRecord(
        id=RUN_ID,
        workflow="two steps",
        status=RunStatus.FAILED,
        created_at=0.0,
        workspace=str(tmp_path),
        run_dir=str(run_dir),
        step_ids=["build", "review"],
    )
    steps = [
        StepRecord(id="build", type="cmd", queue="command", status=StepStatus.FAILED),
        StepRecord(id="review", type="prompt", queue="agent"),
    ]
    LocalArtifactStore(run_dir).mirror(run, steps)
    result = diagram(RUN_ID, "--format", "dot")
    assert result.exit_code == 0, result.output
    assert result.output == DOT_TWO_STEPS.replace(
        'step_build [label="build\\ncmd on command"]',
        'step_build [label="build\\ncmd on command\\nfailed", '
        'style=filled, fillcolor="#ffcdd2", color="#c62828"]',
    ).replace(
        'step_review [label="review\\nprompt on agent"]',
        'step_review [label="review\\nprompt on agent\\npending", '
        'style=filled, fillcolor="#e0e0e0", color="#757575"]',
    )


def test_the_example_workflow_draws_without_error() -> None:
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello.yml"
    result = diagram(str(hello))
    assert result.exit_code == 0, result.output
    assert "  gate_count_words --> step_count_words\n" in result.output
