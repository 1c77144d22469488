"""A loopback server speaking OpenAI's chat-completions protocol, for tests.

OpenAI's cloud cannot be reached from these machines, so the tests run this peer instead: a real
HTTP server on 127.0.0.1 that answers POST /v1/chat/completions the way OpenAI-compatible
servers (OpenAI, Ollama, vLLM, llama.cpp) do. Tests script its replies and inspect what the
client sent (headers, messages, the image, response_format).

    server = FakeOpenAI().start()
    server.reply_json({"title": "A person", ...})    # next reply: 200 with that JSON as content
    server.reply_error(429, headers={"Retry-After": "1"})
    server.handler = lambda request: Reply.json({...})   # or compute replies per request
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering (for timeouts)

    @staticmethod
    def completion(
        content: str, prompt_tokens: int = 100, completion_tokens: int = 20, model: str = "m"
    ) -> Reply:
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return Reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    @staticmethod
    def json(obj: Any, prompt_tokens: int = 100, completion_tokens: int = 20) -> Reply:
        return Reply.completion(json.dumps(obj), prompt_tokens, completion_tokens)

    @staticmethod
    def error(status: int, message: str = "error", headers: dict[str, str] | None = None) -> Reply:
        body = json.dumps({"error": {"message": message, "type": "test", "code": status}})
        return Reply(status, body.encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class Request:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # time.monotonic() when the request arrived (to check that a client waited between tries)
    at: float = field(default_factory=time.monotonic)

    @property
    def images(self) -> list[bytes]:
        """The images sent as data: URLs in the messages, decoded."""
        found = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                if part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    if url.startswith("data:"):
                        found.append(base64.b64decode(url.split(",", 1)[1]))
        return found

    @property
    def text(self) -> str:
        """All text of all messages, joined."""
        chunks = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                chunks.append(content)
            elif isinstance(content, list):
                chunks.extend(p.get("text", "") for p in content if p.get("type") == "text")
        return "\n".join(chunks)


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.replies: deque[Reply] = deque()
        # Used when no scripted reply is queued; by default a 500 that says so.
        self.handler: Callable[[Request], Reply] = lambda _r: Reply.error(
            500, "the test queued no reply"
        )
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # scripting
    def reply_json(self, obj: Any, prompt_tokens: int = 100, completion_tokens: int = 20) -> None:
        self.replies.append(Reply.json(obj, prompt_tokens, completion_tokens))

    def reply_text(self, content: str) -> None:
        self.replies.append(Reply.completion(content))

    def reply_error(
        self, status: int, message: str = "error", headers: dict[str, str] | None = None
    ) -> None:
        self.replies.append(Reply.error(status, message, headers))

    def reply(self, reply: Reply) -> None:
        self.replies.append(reply)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _next_reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.popleft()
        return self.handler(request)

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    reply = Reply.error(404, f"unknown path {self.path}")
                else:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = {}
                    request = Request(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                    reply = fake._next_reply(request)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
