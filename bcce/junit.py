"""JUnit XML of a run, so a CI system (GitHub Actions, GitLab, Jenkins) shows each step.

The input is the dict :func:`bcce.runs.summary` returns. One ``<testsuite>`` per run, one
``<testcase>`` per step:

===============================  ================================================
step                             testcase
===============================  ================================================
succeeded                        passes
failed, timed_out                ``<failure type="failed|timed_out">``
failed, the run continued        ``<failure>`` whose message says the run went on
denied                           ``<failure type="policy_denied">``
cancelled, or left active when   ``<error type="cancelled|interrupted">``
the run ended
pending, or active in a run      ``<skipped message="not run: ...">``
that has not ended
===============================  ================================================

A run that ended unsuccessfully with no step to blame (cancelled between steps, a crashed
gate) gets one more testcase, ``(run)``, with an ``<error>``: CI must not show it green.
Step output is referenced by path in ``<system-out>``, never copied: it can be large and
may hold secrets.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bcce.artifacts import STDERR, STDOUT, write_atomic

RUN_CASE = "(run)"
"""Name of the extra testcase for a run that failed outside any step (not a valid step id)."""
OUTPUT_FILES = (STDOUT, STDERR)
MESSAGE_CHARS = 500

# Characters XML 1.0 does not allow anywhere, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_ACTIVE = ("allowed", "running", "retrying")


def junit_xml(summary: dict[str, Any]) -> str:
    """The run as a JUnit XML document (UTF-8 text with its declaration)."""
    workflow = str(summary.get("workflow") or "workflow")
    status = str(summary.get("status") or "")
    steps: list[dict[str, Any]] = list(summary.get("steps") or [])
    ended = summary.get("exit_code") is not None

    suite = ET.Element("testsuite", name=_clean(workflow))
    # The JUnit schema wants properties before the testcases.
    properties = ET.SubElement(suite, "properties")
    for name in ("run_id", "status", "exit_code", "run_dir"):
        if summary.get(name) is not None:
            ET.SubElement(properties, "property", name=name, value=_clean(str(summary[name])))

    classname = f"bcce.{_slug(workflow)}"
    cases = [_testcase(suite, classname, step, status, ended) for step in steps]
    blamed = any(kind in ("failure", "error") for kind in cases)
    if ended and status != "succeeded" and not blamed:
        case = ET.SubElement(suite, "testcase", classname=classname, name=RUN_CASE, time="0.000")
        error = str(summary.get("error") or f"the run ended {status}")
        _outcome(case, "error", status, error)
        cases.append("error")

    started = [s["started_at"] for s in steps if s.get("started_at")]
    took = summary.get("duration_seconds")
    if took is None:
        took = sum(float(s.get("duration_seconds") or 0) for s in steps)
    counts = {
        "tests": str(len(cases)),
        "failures": str(cases.count("failure")),
        "errors": str(cases.count("error")),
        "skipped": str(cases.count("skipped")),
        "time": _seconds(took),
    }
    suite.attrib.update(counts)
    if started:
        moment = datetime.fromtimestamp(min(started), UTC)
        suite.set("timestamp", moment.strftime("%Y-%m-%dT%H:%M:%S"))
    root = ET.Element("testsuites", {"name": "bcce", **counts})
    root.append(suite)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def write_junit(path: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Write :func:`junit_xml` of summary to path atomically (creating folders); returns it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, junit_xml(summary))
    return target


def _testcase(
    suite: ET.Element, classname: str, step: dict[str, Any], run_status: str, ended: bool
) -> str:
    """Add one step's testcase; returns its outcome: pass, failure, error or skipped."""
    case = ET.SubElement(
        suite,
        "testcase",
        classname=classname,
        name=_clean(str(step.get("id", "?"))),
        time=_seconds(step.get("duration_seconds") or 0),
    )
    status = str(step.get("status") or "pending")
    error = str(step.get("error") or "")
    kind = "pass"
    if status in ("failed", "timed_out"):
        kind = "failure"
        exit_code = step.get("exit_code")
        detail = error or status + ("" if exit_code is None else f" with exit {exit_code}")
        if step.get("continued"):
            detail = f"{status}; the run continued (on_error: continue): {detail}"
        _outcome(case, kind, status, detail)
    elif status == "denied":
        kind = "failure"
        decision = step.get("decision") or {}
        reason = decision.get("reason") or error or "denied by policy"
        rule = decision.get("rule")
        _outcome(case, kind, "policy_denied", f"denied by {rule}: {reason}" if rule else reason)
    elif status == "cancelled" or (status in _ACTIVE and ended):
        kind = "error"
        kind_type = "cancelled" if status == "cancelled" else "interrupted"
        _outcome(case, kind, kind_type, error or f"{status} when the run ended {run_status}")
    elif status == "pending" or status in _ACTIVE:
        kind = "skipped"
        why = f"the run ended {run_status} before this step" if ended else f"run is {run_status}"
        if status in _ACTIVE:
            why = f"step is {status}"
        ET.SubElement(case, "skipped", message=_clean(f"not run: {why}"))
    paths = step.get("artifacts") or {}
    listed = [f"{name}: {paths[name]}" for name in OUTPUT_FILES if paths.get(name)]
    if listed:
        ET.SubElement(case, "system-out").text = _clean("\n".join(listed))
    return kind


def _outcome(case: ET.Element, kind: str, kind_type: str, text: str) -> None:
    """A failure or error element: the first line as message, the whole text inside."""
    text = _clean(text)
    message = text.splitlines()[0] if text.strip() else kind_type
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 3] + "..."
    ET.SubElement(case, kind, message=message, type=kind_type).text = text


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _slug(name: str) -> str:
    # Dots would split the classname into packages in Jenkins.
    return _NOT_SLUG.sub("_", name.lower()).strip("_") or "workflow"


def _seconds(value: Any) -> str:
    return f"{float(value):.3f}"
