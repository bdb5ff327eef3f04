"""Tests for prompt steps: the prompt sent, Converse over the real wire format, retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bcce.steptypes import StepContext, StepOutcome
from bcce.workflow import Inputs, PromptStep
from tests.fakes import bedrock
from workers.executors import prompt as executor

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # botocore's standard retry mode backs off up to 20 s; tests keep its decisions, not waits.
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda *a: 0)


def run(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, **step: Any) -> StepOutcome:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
    workspace = tmp_path / "ws"
    step_dir = tmp_path / "run" / "ask"
    workspace.mkdir(exist_ok=True)
    step_dir.mkdir(parents=True, exist_ok=True)
    earlier = tmp_path / "run" / "scan" / "output.txt"
    earlier.parent.mkdir(parents=True, exist_ok=True)
    earlier.write_text("3 TODOs found\n")
    ctx = StepContext(
        run_id="2026-11-26T14-03-07-a1b2c3",
        step=PromptStep(id="ask", type="prompt", **step),
        attempt=1,
        timeout_seconds=20,
        workspace=workspace,
        step_dir=step_dir,
        env={},
        output_cap_bytes=1 << 20,
        read_output=lambda sid: (tmp_path / "run" / sid / "output.txt").read_text(),
        output_path=lambda sid: tmp_path / "run" / sid / "output.txt",
        workflow_model=MODEL,
    )
    return executor.execute(ctx)


def test_one_converse_call_with_the_prompt_and_earlier_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "notes.md").write_text("remember the milk\n")
    with bedrock.serve([bedrock.answer("Summary: fine.", 40, 9)]) as server:
        outcome = run(
            tmp_path,
            server.url,
            monkeypatch,
            prompt="Summarise: {{ steps.scan.output }}",
            inputs=Inputs(paths=("*.md",)),
        )
    assert outcome.ok, outcome.error
    assert (tmp_path / "run" / "ask" / "output.txt").read_text() == "Summary: fine.\n"
    [request] = server.requests
    assert request["model"] == MODEL  # inference-profile ids pass through untouched
    text = request["body"]["messages"][0]["content"][0]["text"]
    assert text.startswith("Summarise: 3 TODOs found")
    assert "### notes.md" in text and "remember the milk" in text
    assert outcome.metrics["usage"] == {"input_tokens": 40, "output_tokens": 9}
    assert outcome.metrics["cost_usd"] == pytest.approx((40 * 3 + 9 * 15) / 1e6)
    saved = json.loads((tmp_path / "run" / "ask" / "response.json").read_text())
    assert saved["stopReason"] == "end_turn"


def test_throttling_is_retried_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    throttled = bedrock.error("ThrottlingException", "Too many requests", 429)
    with bedrock.serve([throttled, throttled, bedrock.answer("ok")]) as server:
        outcome = run(tmp_path, server.url, monkeypatch, prompt="hi")
    assert outcome.ok, outcome.error
    assert len(server.requests) == 3
    assert outcome.metrics["attempts"] == 3


def test_a_validation_error_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    invalid = bedrock.error("ValidationException", "The provided model identifier is invalid.", 400)
    with bedrock.serve([invalid, bedrock.answer("never")]) as server:
        outcome = run(tmp_path, server.url, monkeypatch, prompt="hi", model="nope")
    assert not outcome.ok
    assert len(server.requests) == 1
    assert outcome.error == (
        "Bedrock Converse with 'nope' failed: "
        "ValidationException: The provided model identifier is invalid."
    )


def test_a_prompt_step_without_any_model_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "_converse", lambda *a: pytest.fail("no call expected"))
    step_dir = tmp_path / "s"
    step_dir.mkdir()
    ctx = StepContext(
        run_id="r",
        step=PromptStep(id="ask", type="prompt", prompt="hi"),
        attempt=1,
        timeout_seconds=5,
        workspace=tmp_path,
        step_dir=step_dir,
        env={},
        output_cap_bytes=1024,
        read_output=str,
        output_path=Path,
    )
    outcome = executor.execute(ctx)
    assert outcome.error == "a prompt step needs a model: set `model` on the step or workflow"
