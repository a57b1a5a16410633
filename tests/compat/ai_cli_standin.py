"""Offline stand-in for the model APIs that the real AI coding CLIs call.

Serves, on 127.0.0.1 and a free port, in a daemon thread (stdlib only):

* the Anthropic Messages API used by Claude Code: ``POST /v1/messages`` (SSE when
  ``stream`` is true, JSON otherwise), ``POST /v1/messages/count_tokens``, and harmless
  answers to the probes it makes on start-up (``HEAD``/``GET`` of ``/`` and friends);
* the OpenAI-compatible API used by OpenCode with ``@ai-sdk/openai-compatible``:
  ``POST /v1/chat/completions`` (SSE ``data: {chunk}`` lines ending with
  ``data: [DONE]`` when ``stream`` is true, JSON otherwise) and ``GET /v1/models``.

Usage::

    from ai_cli_standin import StandIn
    s = StandIn()                      # started
    s.url                              # "http://127.0.0.1:PORT"
    s.script(["first reply", "second reply"])
    s.hang = True                      # accept requests and never answer (until False/close)
    s.fail = (500, "boom")             # answer conversation requests with this HTTP error
    s.requests                         # parsed JSON bodies of the conversation requests
    s.history()                        # [(role, text), ...] of the last conversation request
    s.close()

Replies: each *conversation* request takes the next scripted reply; once the script is
used up (or when none was given) the reply is ``"echo: <last user message text>"``
(Claude Code's ``<system-reminder>`` blocks left out).

Side requests do not consume scripted replies.  OpenCode sends, on the first turn of a
session, a title request (system prompt "You are a title generator...", no ``tools``)
before the conversation request; Claude Code 2.1.x in ``-p`` mode with
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` sends none, but other modes may send a
quota probe (``max_tokens: 1``) or a title/topic request.  A request is a *side* request
when

* ``max_tokens`` <= 16 (quota / count probes), or
* it carries no ``tools`` and its system prompt asks for a title / topic / summary
  (``_SIDE_SYSTEM_PATTERNS``); conversation requests of both CLIs always carry tools.

Side requests are answered with ``side_reply`` (default ``"ok"``), never hang or fail,
and are recorded in ``side_requests``.  ``requests`` holds every conversation request
received (also those that hung or failed; ``hung_requests`` / ``failed_requests`` hold
those), ``replies`` the reply texts sent, and ``log`` every request of any kind as
``(method, path, body)``.  ``history()`` gives the ``(role, text)`` pairs of a request.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["StandIn"]

_SIDE_SYSTEM_PATTERNS = re.compile(
    r"(write a (5-10 word |short )?title|sentence-case title|conversation title|"
    r"analyze if this message indicates a new conversation topic|"
    r"isNewTopic|summariz(e|ing) (this|the) (conversation|session)|"
    r"generate a (short|concise|brief) title|you are a title generator|"
    r"generate a title for this conversation)",
    re.IGNORECASE,
)


def _text_of(content: Any) -> str:
    """Plain text of an Anthropic/OpenAI message ``content`` (string or blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") in ("text", "input_text") and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif block.get("type") == "tool_result":
                    parts.append(_text_of(block.get("content")))
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(p for p in parts if p)
    return str(content)


def _strip_reminders(text: str) -> str:
    """Drop Claude Code's ``<system-reminder>...</system-reminder>`` blocks."""
    return re.sub(r"<system-reminder>.*?</system-reminder>", "", text, flags=re.DOTALL).strip()


def last_user_text(body: dict) -> str:
    """Text of the last user message of a Messages or Chat Completions request."""
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, list):
            # Claude Code puts reminders and the user's text in separate blocks; keep the
            # text blocks that are not pure reminders.
            texts = [
                _strip_reminders(b.get("text", ""))
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            ]
            texts = [t for t in texts if t]
            if texts:
                return texts[-1]
            return _strip_reminders(_text_of(content))
        return _strip_reminders(_text_of(content))
    return ""


def _system_text(body: dict) -> str:
    system = body.get("system")
    text = _text_of(system) if system is not None else ""
    # OpenAI style: system messages inside ``messages``.
    for msg in body.get("messages") or []:
        if msg.get("role") in ("system", "developer"):
            text += "\n" + _text_of(msg.get("content"))
    return text


def _is_side_request(body: dict) -> bool:
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens <= 16:
        return True
    if not body.get("tools") and _SIDE_SYSTEM_PATTERNS.search(_system_text(body)):
        return True
    return False


class StandIn:
    """A local stand-in for the Anthropic and OpenAI-compatible model APIs."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_size: int = 8):
        self._lock = threading.Lock()
        self._script: list[str] = []
        self._closed = threading.Event()
        self.hang = False
        self.fail: tuple[int, str] | None = None
        self.side_reply = "ok"
        self.chunk_size = chunk_size
        self.requests: list[dict] = []  # every conversation request received (JSON bodies)
        self.side_requests: list[dict] = []
        self.log: list[tuple[str, str, Any]] = []  # every request: (method, path, body)
        self.replies: list[str] = []  # the reply texts sent, one per answered conversation request
        self.hung_requests: list[dict] = []  # conversation requests received while ``hang``
        self.failed_requests: list[dict] = []  # conversation requests answered with ``fail``
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def _read_body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not raw:
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    return raw.decode("utf-8", "replace")

            def _json(self, status: int, obj: Any, head: bool = False) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("request-id", "req_standin_" + uuid.uuid4().hex[:12])
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def do_HEAD(self):
                standin._record(self.command, self.path, None)
                self._json(200, {}, head=True)

            def do_GET(self):
                standin._record(self.command, self.path, None)
                path = self.path.split("?", 1)[0].rstrip("/")
                if path.endswith("/models"):
                    self._json(200, standin._models())
                else:
                    self._json(200, {"ok": True})

            def do_POST(self):
                body = self._read_body()
                standin._record(self.command, self.path, body)
                path = self.path.split("?", 1)[0].rstrip("/")
                if not isinstance(body, dict):
                    body = {}
                if path.endswith("/messages/count_tokens"):
                    n = max(1, len(json.dumps(body)) // 4)
                    self._json(200, {"input_tokens": n})
                elif path.endswith("/messages"):
                    standin._serve(self, body, "anthropic")
                elif path.endswith("/chat/completions"):
                    standin._serve(self, body, "openai")
                else:
                    self._json(200, {})

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):  # clients that hang up: quiet
                pass

        self._server = Server((host, port), Handler)
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # -- public API ---------------------------------------------------------------
    def script(self, replies: list[str]) -> None:
        """Replies for the next conversation requests, in order (replaces any left)."""
        with self._lock:
            self._script = list(replies)

    def last_request(self) -> dict | None:
        return self.requests[-1] if self.requests else None

    def history(self, body: dict | None = None) -> list[tuple[str, str]]:
        """``(role, text)`` of the user/assistant messages of a conversation request
        (default: the last one), with Claude Code's ``<system-reminder>`` blocks and
        empty texts left out, e.g. ``[("user", "hi"), ("assistant", "first reply"),
        ("user", "again")]``."""
        if body is None:
            body = self.last_request() or {}
        out = []
        for msg in body.get("messages") or []:
            role = msg.get("role")
            if role not in ("user", "assistant"):
                continue
            content = msg.get("content")
            blocks = content if isinstance(content, list) else [content]
            texts = [_strip_reminders(_text_of(b if not isinstance(b, dict) else [b])) for b in blocks]
            text = "\n".join(t for t in texts if t)
            if text:
                out.append((role, text))
        return out

    def close(self) -> None:
        if self._closed.is_set():
            return
        self.hang = False
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "StandIn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------
    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.log.append((method, path, body))

    def _models(self) -> dict:
        ids = ["standin-model", "claude-sonnet-4-5", "claude-haiku-4-5"]
        return {
            "object": "list",
            "data": [
                {"id": i, "object": "model", "type": "model", "created": 0, "owned_by": "standin",
                 "display_name": i, "created_at": "2025-01-01T00:00:00Z"}
                for i in ids
            ],
            "has_more": False,
            "first_id": ids[0],
            "last_id": ids[-1],
        }

    def _next_reply(self, body: dict, side: bool) -> str:
        with self._lock:
            if side:
                return self.side_reply
            if self._script:
                reply = self._script.pop(0)
            else:
                reply = "echo: " + last_user_text(body)
            self.replies.append(reply)
            return reply

    def _wait_while_hanging(self, handler: BaseHTTPRequestHandler) -> bool:
        """Block while ``hang`` is set; False when closed meanwhile or the client left."""
        sock = handler.connection
        while self.hang and not self._closed.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        return False  # client closed the connection (gave up / was killed)
                    time.sleep(0.05)  # pipelined data: not a hang-up
                except OSError:
                    return False
        return not self._closed.is_set()

    def _serve(self, handler: BaseHTTPRequestHandler, body: dict, flavour: str) -> None:
        side = _is_side_request(body)
        with self._lock:
            (self.side_requests if side else self.requests).append(body)
        if self.hang and not side:
            with self._lock:
                self.hung_requests.append(body)
            if not self._wait_while_hanging(handler):
                handler.close_connection = True
                return
        if self.fail is not None and not side:
            status, message = self.fail
            with self._lock:
                self.failed_requests.append(body)
            if flavour == "anthropic":
                err_type = {400: "invalid_request_error", 401: "authentication_error",
                            403: "permission_error", 404: "not_found_error",
                            429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
                handler._json(status, {"type": "error", "error": {"type": err_type, "message": message}})
            else:
                handler._json(status, {"error": {"message": message, "type": "server_error", "code": status}})
            return
        reply = self._next_reply(body, side)
        model = body.get("model") or "standin-model"
        stream = bool(body.get("stream"))
        if flavour == "anthropic":
            if stream:
                self._anthropic_sse(handler, model, reply)
            else:
                handler._json(200, self._anthropic_message(model, reply))
        else:
            if stream:
                self._openai_sse(handler, model, reply, body)
            else:
                handler._json(200, self._openai_completion(model, reply))

    def _chunks(self, text: str) -> list[str]:
        n = max(1, self.chunk_size)
        return [text[i:i + n] for i in range(0, len(text), n)] or [""]

    @staticmethod
    def _usage_out(text: str) -> int:
        return max(1, len(text) // 4)

    # Anthropic ---------------------------------------------------------------------
    def _anthropic_message(self, model: str, text: str) -> dict:
        return {
            "id": "msg_standin_" + uuid.uuid4().hex[:16],
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": self._usage_out(text),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }

    def _anthropic_sse(self, handler, model: str, text: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("request-id", "req_standin_" + uuid.uuid4().hex[:12])
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        msg_id = "msg_standin_" + uuid.uuid4().hex[:16]

        def ev(name: str, data: dict) -> None:
            handler.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            handler.wfile.flush()

        try:
            ev("message_start", {"type": "message_start", "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})
            ev("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})
            ev("ping", {"type": "ping"})
            for piece in self._chunks(text):
                ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": piece}})
            ev("content_block_stop", {"type": "content_block_stop", "index": 0})
            ev("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                 "usage": {"output_tokens": self._usage_out(text)}})
            ev("message_stop", {"type": "message_stop"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # OpenAI-compatible ----------------------------------------------------------------
    def _openai_completion(self, model: str, text: str) -> dict:
        return {
            "id": "chatcmpl-standin" + uuid.uuid4().hex[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": self._usage_out(text),
                      "total_tokens": 10 + self._usage_out(text)},
        }

    def _openai_sse(self, handler, model: str, text: str, body: dict) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        cid = "chatcmpl-standin" + uuid.uuid4().hex[:12]
        created = int(time.time())

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> None:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                obj["usage"] = usage
            handler.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
            handler.wfile.flush()

        try:
            chunk({"role": "assistant", "content": ""})
            for piece in self._chunks(text):
                chunk({"content": piece})
            out = self._usage_out(text)
            chunk({}, "stop", {"prompt_tokens": 10, "completion_tokens": out, "total_tokens": 10 + out})
            handler.wfile.write(b"data: [DONE]\n\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


if __name__ == "__main__":  # manual use: python3 ai_cli_standin.py [port]
    import sys

    s = StandIn(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(s.url, flush=True)
    try:
        last = 0
        while True:
            time.sleep(0.2)
            while last < len(s.log):
                m, p, b = s.log[last]
                last += 1
                print(m, p, json.dumps(b)[:300] if b is not None else "", flush=True)
    except KeyboardInterrupt:
        s.close()
