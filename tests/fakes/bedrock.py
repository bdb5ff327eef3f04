"""A local HTTP server speaking Bedrock Runtime's Converse wire format (restJson).

boto3 talks to it through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, so the whole client path
runs (signing, serialisation, the standard retry mode and its backoff, error parsing);
only AWS is missing. Script it with the responses to give, in order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


def answer(text: str, input_tokens: int = 25, output_tokens: int = 12) -> dict[str, Any]:
    """A 200 Converse response body with text and usage, as Bedrock sends it."""
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": 321},
    }


def error(code: str, message: str, status: int) -> tuple[int, dict[str, Any], str]:
    """An error reply as Bedrock sends it: status, JSON body and x-amzn-ErrorType."""
    return status, {"message": message}, code


@dataclass
class Bedrock:
    """The running server: its URL, what it will answer, and what it was asked."""

    url: str = ""
    replies: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def serve(replies: list[Any]) -> Iterator[Bedrock]:
    """Serve replies (answer() bodies or error() tuples) in order; the last one repeats."""
    state = Bedrock(replies=list(replies))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            parts = self.path.split("/")
            with lock:
                state.requests.append({"path": self.path, "model": unquote(parts[2]), "body": body})
                reply = state.replies.pop(0) if len(state.replies) > 1 else state.replies[0]
            status, payload, kind = (200, reply, None) if isinstance(reply, dict) else reply
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-RequestId", "req-1")
            if kind:
                self.send_header("x-amzn-ErrorType", f"{kind}:http://internal.amazon.com/")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
