"""``prompt`` steps: one call to a model through the Bedrock Runtime Converse API.

Throttling and transient service errors are retried with backoff by botocore's ``standard``
retry mode (see :mod:`bcce.aws`); validation and access errors fail at once. The call runs
on a helper thread so the step still honours its timeout and the run's cancel switch.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bcce import aws, pricing
from bcce.artifacts import OUTPUT, STDERR
from bcce.redact import Redactor
from bcce.steptypes import StepContext, StepOutcome
from workers.executors import prompting

RESPONSE = "response.json"
_POLL_SECONDS = 0.1
# Converse usage field -> the names Claude Code and the price table use.
USAGE_KEYS = {
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cacheReadInputTokens": "cache_read_input_tokens",
    "cacheWriteInputTokens": "cache_creation_input_tokens",
}
_calls = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bcce-converse")


def execute(ctx: StepContext) -> StepOutcome:
    """Send the step's prompt to its model and keep the answer."""
    model = ctx.step.model or ctx.workflow_model
    if not model:
        return _failed(ctx, "a prompt step needs a model: set `model` on the step or workflow")
    text = prompting.build(ctx)
    call = _calls.submit(_converse, model, text, ctx.timeout_seconds)
    waited = 0.0
    while not _done(call, _POLL_SECONDS):
        waited += _POLL_SECONDS
        if ctx.cancel.is_set():
            return StepOutcome(ok=False, cancelled=True, error="stopped because the run ended")
        if waited >= ctx.timeout_seconds:
            return StepOutcome(
                ok=False, timed_out=True, error=f"timed out after {ctx.timeout_seconds:g}s"
            )
    try:
        response = call.result()
    except Exception as exc:
        return _failed(ctx, f"Bedrock Converse with {model!r} failed: {_reason(exc)}")
    redactor = Redactor()
    answer = "".join(
        block.get("text", "")
        for block in response.get("output", {}).get("message", {}).get("content", [])
    )
    (ctx.step_dir / OUTPUT).write_text(redactor.text(answer) + "\n", encoding="utf-8")
    kept = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    (ctx.step_dir / RESPONSE).write_text(json.dumps(redactor.json(kept), indent=2), "utf-8")
    usage = {
        ours: int(response.get("usage", {}).get(theirs, 0))
        for theirs, ours in USAGE_KEYS.items()
        if theirs in response.get("usage", {})
    }
    stop = response.get("stopReason")
    return StepOutcome(
        ok=True,
        metrics={
            "model": model,
            "usage": usage,
            "cost_usd": pricing.cost_usd(model, usage),
            "cost_source": "price-table",
            "stop_reason": stop,
            "latency_ms": response.get("metrics", {}).get("latencyMs"),
            "attempts": response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1,
        },
    )


def _converse(model: str, text: str, timeout: float) -> dict[str, Any]:
    client = aws.client("bedrock-runtime", read_timeout=min(timeout, aws.MODEL_READ_TIMEOUT))
    response: dict[str, Any] = client.converse(
        modelId=model, messages=[{"role": "user", "content": [{"text": text}]}]
    )
    return response


def _done(call: Future[dict[str, Any]], seconds: float) -> bool:
    try:
        call.exception(timeout=seconds)
    except TimeoutError:
        return False
    return True


def _reason(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    if error.get("Code"):
        return f"{error['Code']}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _failed(ctx: StepContext, error: str) -> StepOutcome:
    (ctx.step_dir / OUTPUT).write_text("", encoding="utf-8")
    (ctx.step_dir / STDERR).write_text(f"bcce: {error}\n", encoding="utf-8")
    return StepOutcome(ok=False, error=error)
