"""``transcript.md``: an agent's session, readable, from its ``transcript.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bcce.redact import Redactor

MAX_BLOCK_CHARS = 4000


def render(source: Path, target: Path, redactor: Redactor) -> None:
    """Write target from the JSON lines in source (a missing source gives a short note)."""
    lines = ["# Agent transcript", ""]
    try:
        raw = source.read_text("utf-8").splitlines()
    except OSError:
        raw = []
    if not raw:
        lines.append("_No messages were recorded (the session did not start, or was killed)._")
    for line in raw:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        lines += list(_message(message))
    target.write_text(redactor.text("\n".join(lines)) + "\n", encoding="utf-8")


def _message(message: dict[str, Any]) -> Iterator[str]:
    kind = message.get("type")
    if kind == "SystemMessage":
        data = message.get("data") or {}
        if message.get("subtype") == "init":
            yield f"_Session {data.get('session_id')} · model {data.get('model')} · "
            yield f"tools {', '.join(data.get('tools') or []) or 'none'}_"
            yield ""
        return
    if kind in ("AssistantMessage", "UserMessage"):
        who = "Assistant" if kind == "AssistantMessage" else "Tool result"
        content = message.get("content")
        if isinstance(content, str):
            yield f"**{'Assistant' if kind == 'AssistantMessage' else 'User'}:** {content}"
            yield ""
            return
        for block in content or []:
            yield from _block(who, block)
        return
    if kind == "ResultMessage":
        status = "error" if message.get("is_error") else "done"
        yield f"## Result ({status}, {message.get('num_turns')} turns)"
        yield ""
        yield _clip(str(message.get("result") or ""))
        cost = message.get("total_cost_usd")
        if cost is not None:
            yield ""
            yield f"_Cost ${cost:.4f}, {message.get('duration_ms')} ms_"
        yield ""


def _block(who: str, block: dict[str, Any]) -> Iterator[str]:
    if "text" in block and "tool_use_id" not in block:
        yield f"**{who}:** {block['text']}"
    elif "name" in block and "input" in block:
        yield f"**Tool call `{block['name']}`**"
        yield "```json"
        yield _clip(json.dumps(block["input"], indent=2))
        yield "```"
    elif "tool_use_id" in block:
        mark = " (error)" if block.get("is_error") else ""
        content = block.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        yield f"**Tool result{mark}:**"
        yield "```"
        yield _clip(text or "")
        yield "```"
    elif "thinking" in block:
        yield f"_Thinking:_ {_clip(block['thinking'])}"
    yield ""


def _clip(text: str) -> str:
    if len(text) <= MAX_BLOCK_CHARS:
        return text
    return text[:MAX_BLOCK_CHARS] + f"\n… ({len(text) - MAX_BLOCK_CHARS} more characters)"
