"""Tests for bcce.junit: the JUnit XML a CI system reads, parsed back as CI would."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bcce.junit import RUN_CASE, junit_xml, write_junit
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus
from bcce.runs import summary

RUN_DIR = Path("/ws/.bcce_runs/r1")


def run_of(status: RunStatus, steps: list[StepRecord], error: str | None = None) -> dict[str, Any]:
    run = RunRecord(
        id="r1",
        workflow="Build & test",
        status=status,
        created_at=1_700_000_000.0,
        finished_at=1_700_000_012.5 if status.terminal else None,
        workspace="/ws",
        run_dir=str(RUN_DIR),
        step_ids=[s.id for s in steps],
        error=error,
    )
    return summary(run, steps)


def step(step_id: str, status: StepStatus = StepStatus.PENDING, **fields: Any) -> StepRecord:
    ran = status not in (StepStatus.PENDING, StepStatus.DENIED)
    if ran:
        fields = {
            "started_at": 1_700_000_001.0,
            "finished_at": 1_700_000_003.25,
            "duration_seconds": 2.25,
            "attempts": 1,
            "artifacts": {
                "stdout.txt": str(RUN_DIR / step_id / "stdout.txt"),
                "stderr.txt": str(RUN_DIR / step_id / "stderr.txt"),
                "metrics.json": str(RUN_DIR / step_id / "metrics.json"),
            },
            **fields,
        }
    return StepRecord(id=step_id, type="cmd", queue="command", status=status, **fields)


def parse(data: dict[str, Any]) -> ET.Element:
    root = ET.fromstring(junit_xml(data))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def counts(suite: ET.Element) -> dict[str, str]:
    return {k: suite.get(k, "") for k in ("tests", "failures", "errors", "skipped")}


def case(suite: ET.Element, name: str) -> ET.Element:
    found = [c for c in suite.findall("testcase") if c.get("name") == name]
    assert len(found) == 1, name
    return found[0]


def test_a_succeeded_run_is_one_passing_testcase_per_step_with_run_properties() -> None:
    suite = parse(
        run_of(
            RunStatus.SUCCEEDED,
            [step("build", StepStatus.SUCCEEDED), step("test", StepStatus.SUCCEEDED)],
        )
    )
    assert suite.get("name") == "Build & test"
    assert counts(suite) == {"tests": "2", "failures": "0", "errors": "0", "skipped": "0"}
    assert suite.get("time") == "12.500"
    assert [c.get("name") for c in suite.findall("testcase")] == ["build", "test"]
    build = case(suite, "build")
    assert build.get("classname") == "bcce.build_test"
    assert build.get("time") == "2.250"
    assert list(build) == [build.find("system-out")]
    props = {p.get("name"): p.get("value") for p in suite.iterfind("properties/property")}
    assert props["run_id"] == "r1"
    assert props["status"] == "succeeded"
    assert props["exit_code"] == "0"


def test_a_failed_step_is_a_failure_and_the_steps_after_it_are_skipped_as_not_run() -> None:
    suite = parse(
        run_of(
            RunStatus.FAILED,
            [
                step("build", StepStatus.SUCCEEDED),
                step("test", StepStatus.FAILED, exit_code=3, error="exit code 3"),
                step("deploy"),
                step("notify"),
            ],
            error="step test failed: exit code 3",
        )
    )
    assert counts(suite) == {"tests": "4", "failures": "1", "errors": "0", "skipped": "2"}
    failure = case(suite, "test").find("failure")
    assert failure is not None
    assert failure.get("type") == "failed"
    assert failure.get("message") == "exit code 3"
    for name in ("deploy", "notify"):
        skipped = case(suite, name).find("skipped")
        assert skipped is not None
        assert (skipped.get("message") or "").startswith("not run: ")
        assert "failed" in (skipped.get("message") or "")
    assert case(suite, "build").find("failure") is None


def test_a_timed_out_step_is_a_failure_of_type_timed_out() -> None:
    suite = parse(
        run_of(
            RunStatus.FAILED,
            [step("slow", StepStatus.TIMED_OUT, error="timed out after 1s")],
            error="step slow timed_out",
        )
    )
    failure = case(suite, "slow").find("failure")
    assert failure is not None
    assert failure.get("type") == "timed_out"
    assert failure.get("message") == "timed out after 1s"


def test_a_denied_step_is_a_policy_denied_failure_with_the_rule_and_reason() -> None:
    decision = {
        "allowed": False,
        "rule": "cmd_allowlist",
        "reason": "'touch' is not in cmd_allowlist",
        "timeout_seconds": 60,
    }
    suite = parse(
        run_of(
            RunStatus.DENIED,
            [step("sneaky", StepStatus.DENIED, decision=decision), step("after")],
            error="step sneaky denied: 'touch' is not in cmd_allowlist",
        )
    )
    assert counts(suite) == {"tests": "2", "failures": "1", "errors": "0", "skipped": "1"}
    failure = case(suite, "sneaky").find("failure")
    assert failure is not None
    assert failure.get("type") == "policy_denied"
    assert "cmd_allowlist" in (failure.get("message") or "")
    assert "'touch' is not in cmd_allowlist" in (failure.get("message") or "")
    assert case(suite, "sneaky").find("system-out") is None


def test_a_failure_the_run_continued_past_still_fails_its_testcase_and_says_so() -> None:
    suite = parse(
        run_of(
            RunStatus.SUCCEEDED,
            [
                step("lint", StepStatus.FAILED, exit_code=1, error="exit code 1", continued=True),
                step("build", StepStatus.SUCCEEDED),
            ],
        )
    )
    assert counts(suite) == {"tests": "2", "failures": "1", "errors": "0", "skipped": "0"}
    failure = case(suite, "lint").find("failure")
    assert failure is not None
    assert "continued" in (failure.get("message") or "")
    assert "exit code 1" in (failure.get("message") or "")


def test_control_characters_and_markup_in_an_error_give_valid_xml_without_them() -> None:
    nasty = 'bad\x00\x07\x1b byte <tag> & "quote" ]]> \ufffe\nsecond line'
    data = run_of(
        RunStatus.FAILED,
        [step("build", StepStatus.FAILED, error=nasty, exit_code=1)],
        error=f"step build failed: {nasty}",
    )
    text = junit_xml(data)
    for char in ("\x00", "\x07", "\x1b", "\ufffe"):
        assert char not in text
    failure = case(parse(data), "build").find("failure")
    assert failure is not None
    assert failure.get("message") == 'bad byte <tag> & "quote" ]]> '
    assert failure.text == 'bad byte <tag> & "quote" ]]> \nsecond line'


def test_a_run_that_failed_outside_any_step_gets_an_error_testcase_so_ci_is_not_green() -> None:
    suite = parse(
        run_of(
            RunStatus.CANCELLED,
            [step("build", StepStatus.SUCCEEDED), step("test")],
            error="cancelled by ci: superseded",
        )
    )
    assert counts(suite) == {"tests": "3", "failures": "0", "errors": "1", "skipped": "1"}
    error = case(suite, RUN_CASE).find("error")
    assert error is not None
    assert error.get("type") == "cancelled"
    assert error.get("message") == "cancelled by ci: superseded"


def test_a_step_left_running_when_the_run_ended_is_an_error_not_a_pass() -> None:
    suite = parse(
        run_of(
            RunStatus.TIMED_OUT,
            [step("long", StepStatus.RUNNING, finished_at=None, duration_seconds=None)],
            error="run exceeded max_runtime_seconds",
        )
    )
    assert counts(suite) == {"tests": "1", "failures": "0", "errors": "1", "skipped": "0"}
    error = case(suite, "long").find("error")
    assert error is not None
    assert error.get("type") == "interrupted"


def test_system_out_names_the_output_files_but_never_holds_their_contents(
    tmp_path: Path,
) -> None:
    stdout = tmp_path / "build" / "stdout.txt"
    stdout.parent.mkdir()
    stdout.write_text("TOKEN=hunter2\n", encoding="utf-8")
    data = run_of(
        RunStatus.SUCCEEDED,
        [step("build", StepStatus.SUCCEEDED, artifacts={"stdout.txt": str(stdout)})],
    )
    text = junit_xml(data)
    assert "hunter2" not in text
    out = case(parse(data), "build").find("system-out")
    assert out is not None
    assert str(stdout) in (out.text or "")


def test_write_junit_creates_the_folder_and_leaves_only_the_report(tmp_path: Path) -> None:
    data = run_of(RunStatus.SUCCEEDED, [step("build", StepStatus.SUCCEEDED)])
    target = tmp_path / "reports" / "bcce.xml"
    assert write_junit(target, data) == target
    assert ET.parse(target).getroot().tag == "testsuites"
    assert target.read_text("utf-8").startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert [p.name for p in target.parent.iterdir()] == ["bcce.xml"]
