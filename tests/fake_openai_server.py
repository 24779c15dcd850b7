"""A small deterministic OpenAI-compatible HTTP server for tests and benchmarks.

Real HTTP on 127.0.0.1 (threaded, so concurrent requests really overlap), speaking enough of the
OpenAI wire format for the official client: ``POST /v1/chat/completions`` (plain and streamed as
server-sent events), ``POST /v1/completions``, ``POST /v1/embeddings`` and ``GET /v1/models``.

Tool-bearing chat requests (``tools``) are answered with tool calls: scripted per prompt by
``tool_answers``, or else a call to the tool that ``tool_choice`` names, or whose name the prompt
mentions, or the first tool, with arguments made from its schema (numbers and quoted strings
from the prompt, in order). A request whose last message is a tool result, or with
``tool_choice: "none"``, gets a text reply quoting that result. ``response_format`` requests get
JSON: scripted by ``json_answers``, else an instance of the schema (``json_schema``) or a joke
with ``setup`` and ``punchline`` (``json_object``).

Each model id gets a :class:`FakeModel` script: a list of answers handed out in turn per prompt
(so n concurrent samples of one prompt always yield the same multiset of answers), an optional
delay, and an optional fault (``500``, ``429``, ``garbage``, ``no_choices``, ``slow``, ``drop``,
``cut``). Waits end early when the client hangs up (``aborted`` counts such requests), so tests
can check that abandoned work upstream is really abandoned.

Run it alone for manual checks or benchmarks::

    python tests/fake_openai_server.py --port 8099
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = str | Callable[[str, int], str]


@dataclass
class FakeModel:
    """How one model id behaves. ``answers`` may be a list (cycled per prompt) or a function
    ``(prompt, i) -> text``; ``keywords`` maps a word in the prompt to a list of answers that
    overrides ``answers`` for prompts containing it."""

    answers: list[str] | Callable[[str, int], str] = field(default_factory=lambda: ["OK"])
    keywords: dict[str, list[str]] = field(default_factory=dict)
    delay: float = 0.0
    fault: str | None = None
    """``500``, ``429``, ``garbage`` (200 with a non-JSON body), ``no_choices`` (200 with an
    empty choices list), ``slow`` (sleeps ``delay`` before answering, to trip timeouts),
    ``drop`` (closes the connection without a response), ``cut`` (dies mid-response: a
    streamed answer after ``cut_after`` pieces, with no finish reason; a plain one halfway
    through its body)."""
    fault_every: int = 1
    """Apply the fault to every k-th request only (1: all)."""
    retry_after: str = "0"
    """The ``Retry-After`` header sent with the ``429`` fault."""
    cut_after: int = 1
    """``cut``: pieces of a streamed answer sent before the connection dies."""
    chunk_delay: float = 0.0
    """Seconds between the pieces of a streamed answer."""
    tool_answers: list[Any] | None = None
    """For tool-bearing requests, cycled per prompt: a string (a text reply) or a list of
    ``(name, arguments)`` calls, ``arguments`` a dict or a raw (possibly malformed) string."""
    json_answers: list[str] | None = None
    """For ``response_format`` requests, cycled per prompt: the raw content to return."""
    usage: bool = True
    """Report token counts (``usage``); False: send none, as some servers do."""
    truncate: bool = False
    """Cut a text answer longer than the request's ``max_tokens`` (or ``max_completion_tokens``,
    which ``ChatOpenAI`` sends; counted in words) to that
    many words and report ``finish_reason: "length"``, as a real server does at its limit."""

    def pick(self, prompt: str, i: int) -> str:
        for word, answers in self.keywords.items():
            if word.lower() in prompt.lower():
                return answers[i % len(answers)]
        if callable(self.answers):
            return self.answers(prompt, i)
        return self.answers[i % len(self.answers)]


class FakeOpenAIServer:
    """Start with :meth:`start` (or use :func:`serving`); ``base_url`` ends in ``/v1``."""

    def __init__(self, models: dict[str, FakeModel] | None = None, *, port: int = 0) -> None:
        self.models: dict[str, FakeModel] = dict(models or {})
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._counters: dict[tuple[str, str], int] = {}
        self._per_model: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}
        self.aborted: dict[str, int] = {}
        """Requests per model whose client hung up before the answer was complete."""
        self.peak_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self.connections: set[Any] = set()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = _Server(("127.0.0.1", self._port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop like a killed process: no new connections, and open keep-alive ones cut."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            conns, self.connections = list(self.connections), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self._counters.clear()
            self._per_model.clear()
            self.peak_in_flight.clear()

    def calls(self, model: str) -> int:
        return sum(1 for r in self.requests if r.get("model") == model)

    # ------------------------------------------------------------------ internals
    def _next(self, model: str, prompt: str) -> tuple[int, int]:
        with self._lock:
            key = (model, prompt)
            i = self._counters.get(key, 0)
            self._counters[key] = i + 1
            k = self._per_model.get(model, 0)
            self._per_model[model] = k + 1
            return i, k


class _ClientGone(Exception):
    """The client hung up while the fake was still working on its request."""


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # bursts of many clients must not overflow the listen backlog
    daemon_threads = True


def _prompt_of(body: dict[str, Any]) -> str:
    if "messages" in body:
        msgs = body.get("messages") or []
        for m in reversed(msgs):
            if isinstance(m, dict) and m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, list):
                    return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
                return str(c)
        return ""
    p = body.get("prompt", "")
    return p if isinstance(p, str) else " ".join(map(str, p))


def _fake_embedding(text: str, dim: int = 16) -> list[float]:
    h = hashlib.sha256(text.encode()).digest()
    v = [(b - 127.5) / 127.5 for b in h[:dim]]
    n = sum(x * x for x in v) ** 0.5 or 1.0
    return [x / n for x in v]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.fake._lock:
                self.fake.connections.discard(self.connection)

    def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(
            code, {"error": {"message": message, "type": "fake_error", "code": code}}, headers
        )

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.fake.models]
            self._json(200, {"object": "list", "data": data})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "malformed JSON")
            return
        with self.fake._lock:
            self.fake.requests.append(body)
            self.fake.headers.append(dict(self.headers))
        path = self.path.rstrip("/")
        if path == "/v1/embeddings":
            inputs = body.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else inputs
            data = [
                {"object": "embedding", "index": i, "embedding": _fake_embedding(t)}
                for i, t in enumerate(inputs)
            ]
            self._json(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model"),
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                },
            )
            return
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._error(404, f"no route {self.path}")
            return
        model_id = str(body.get("model", ""))
        spec = self.fake.models.get(model_id)
        if spec is None:
            self._error(404, f"model {model_id!r} not found")
            return
        prompt = _prompt_of(body)
        i, k = self.fake._next(model_id, prompt)
        with self.fake._lock:
            now = self.fake.in_flight.get(model_id, 0) + 1
            self.fake.in_flight[model_id] = now
            self.fake.peak_in_flight[model_id] = max(self.fake.peak_in_flight.get(model_id, 0), now)
        try:
            self._answer(body, spec, prompt, i, k, chat=path.endswith("chat/completions"))
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            with self.fake._lock:
                self.fake.aborted[model_id] = self.fake.aborted.get(model_id, 0) + 1
        finally:
            with self.fake._lock:
                self.fake.in_flight[model_id] -= 1

    def _pause(self, seconds: float) -> None:
        """Sleep, but stop with :class:`_ClientGone` as soon as the client hangs up."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if ready:
                try:
                    peek = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    peek = b""
                if not peek:
                    raise _ClientGone

    def _answer(
        self, body: dict[str, Any], spec: FakeModel, prompt: str, i: int, k: int, *, chat: bool
    ) -> None:
        faulty = spec.fault is not None and k % max(1, spec.fault_every) == 0
        if spec.delay and not (faulty and spec.fault == "slow"):
            self._pause(spec.delay)
        if faulty:
            if spec.fault == "500":
                self._error(500, "internal error (fake)")
                return
            if spec.fault == "429":
                self._error(429, "rate limited (fake)", {"retry-after": spec.retry_after})
                return
            if spec.fault == "garbage":
                data = b"<html>definitely not json</html>"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if spec.fault == "no_choices":
                self._json(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [],
                    },
                )
                return
            if spec.fault == "slow":
                self._pause(spec.delay or 5.0)
            if spec.fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
        calls: list[dict[str, Any]] = []
        text = spec.pick(prompt, i)
        if chat and (body.get("tools") or body.get("response_format")):
            text, calls = _structured_reply(body, spec, prompt, i, text)
        done = "tool_calls" if calls else "stop"
        cap = body.get("max_tokens", body.get("max_completion_tokens"))
        if spec.truncate and not calls and isinstance(cap, int) and len(text.split()) > cap:
            text, done = " ".join(text.split()[:cap]), "length"
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(text.split()),
            "total_tokens": len(prompt.split()) + len(text.split()),
        }
        created = int(time.time())
        cid = f"fake-{k}"
        cut = faulty and spec.fault == "cut"
        if cut and not body.get("stream"):  # promise a whole body, send half of it, hang up
            data = json.dumps({"id": cid, "object": "chat.completion", "choices": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            pieces = [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]
            if calls:
                pieces = []
                for n, c in enumerate(calls):  # each call in two pieces, as real servers split
                    args = c["function"]["arguments"]
                    half = len(args) // 2
                    first_part = {"index": n, "id": c["id"], "type": "function",
                                  "function": {"name": c["function"]["name"], "arguments": args[:half]}}  # fmt: skip
                    rest = {"index": n, "function": {"arguments": args[half:]}}
                    for part in (first_part, rest):
                        delta = {"tool_calls": [part]}
                        if n == 0 and part is first_part:
                            delta.update(role="assistant", content=None)
                        tc = {"id": cid, "object": "chat.completion.chunk", "created": created,
                              "model": body.get("model"),
                              "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
                        self.wfile.write(f"data: {json.dumps(tc)}\n\n".encode())
                        self.wfile.flush()
            for n, piece in enumerate(pieces):
                if cut and n >= spec.cut_after:  # die mid-stream: no finish reason, no [DONE]
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if n and spec.chunk_delay:
                    self._pause(spec.chunk_delay)
                if chat:
                    delta = {"content": piece} if n else {"role": "assistant", "content": piece}
                    ch: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
                    obj = "chat.completion.chunk"
                else:
                    ch = {"index": 0, "text": piece, "finish_reason": None}
                    obj = "text_completion"
                chunk = {
                    "id": cid,
                    "object": obj,
                    "created": created,
                    "model": body.get("model"),
                    "choices": [ch],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            last: dict[str, Any] = {"index": 0, "finish_reason": done}
            last.update({"delta": {}} if chat else {"text": ""})
            end = {
                "id": cid,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": body.get("model"),
                "choices": [last],
            }
            self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
            opts = body.get("stream_options") or {}
            if opts.get("include_usage") and spec.usage:
                u = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body.get("model"),
                    "choices": [],
                    "usage": usage,
                }
                self.wfile.write(f"data: {json.dumps(u)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message = {"role": "assistant", "content": None, "tool_calls": calls}
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "finish_reason": done,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": done, "logprobs": None}
            obj = "text_completion"
        self._json(
            200,
            {
                "id": cid,
                "object": obj,
                "created": created,
                "model": body.get("model"),
                "choices": [choice],
                **({"usage": usage} if spec.usage else {}),
            },
        )


JOKE = {
    "setup": "Why did the cat sit on the computer?",
    "punchline": "To keep an eye on the mouse.",
}


def _structured_reply(
    body: dict[str, Any], spec: FakeModel, prompt: str, i: int, text: str
) -> tuple[str, list[dict[str, Any]]]:
    """The reply to a tool-bearing or ``response_format`` request: (text, tool calls)."""
    msgs = body.get("messages") or []
    last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
    tools = [t.get("function", {}) for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if tools and last.get("role") != "tool" and choice != "none":
        if spec.tool_answers is not None:
            scripted = spec.tool_answers[i % len(spec.tool_answers)]
            if isinstance(scripted, str):
                return scripted, []
            return "", [_call(n, a, k) for k, (n, a) in enumerate(scripted)]
        fn = _choose_tool(tools, choice, prompt)
        return "", [_call(fn["name"], _instance(fn.get("parameters") or {}, prompt), 0)]
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema") and last.get("role") != "tool":
        if spec.json_answers is not None:
            return spec.json_answers[i % len(spec.json_answers)], []
        if fmt["type"] == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            return json.dumps(_instance(schema, prompt)), []
        if isinstance(fmt.get("schema"), dict):  # llama-cpp-python's form: json_object + schema
            return json.dumps(_instance(fmt["schema"], prompt)), []
        return json.dumps(JOKE), []
    if last.get("role") == "tool":
        c = last.get("content")
        result = (
            " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            if isinstance(c, list)
            else c
        )
        return f"The tool said: {result}", []
    return text, []


def _call(name: str, args: Any, k: int) -> dict[str, Any]:
    raw = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return {"id": f"call_{k}_{name}", "type": "function",
            "function": {"name": name, "arguments": raw}}  # fmt: skip


def _choose_tool(tools: list[dict[str, Any]], choice: Any, prompt: str) -> dict[str, Any]:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for t in tools:
            if t.get("name") == name:
                return t
    for t in sorted(tools, key=lambda t: -len(str(t.get("name")))):
        if str(t.get("name")).lower() in prompt.lower():
            return t
    return tools[0]


def _instance(schema: dict[str, Any], prompt: str) -> Any:
    """A value matching ``schema``, with numbers and quoted strings taken from the prompt."""
    import re

    numbers = iter(re.findall(r"-?\d+(?:\.\d+)?", prompt))
    quoted = iter(re.findall(r"'([^']+)'|\"([^\"]+)\"", prompt))
    root = schema

    def make(s: dict[str, Any], depth: int = 0) -> Any:  # recursive schemas: arrays end
        if "$ref" in s:
            node: Any = root
            for part in s["$ref"][2:].split("/") if s["$ref"] != "#" else ():
                node = node[part]
            return make(node, depth)
        for key in ("anyOf", "oneOf"):
            if key in s:
                opts = [o for o in s[key] if o.get("type") != "null"] or s[key]
                return make(opts[0], depth)
        if "allOf" in s:
            return make(s["allOf"][0], depth)
        if s.get("enum"):
            return s["enum"][0]
        if "const" in s:
            return s["const"]
        t = s.get("type", "object" if "properties" in s else "string")
        t = next((x for x in t if x != "null"), "null") if isinstance(t, list) else t
        if t == "object":
            return {k: make(v, depth + 1) for k, v in (s.get("properties") or {}).items()}
        if t == "array":
            return [make(s.get("items") or {}, depth + 1)] if depth < 4 else []
        if t in ("integer", "number"):
            n = next(numbers, "1")
            return int(float(n)) if t == "integer" else float(n) if "." in n else int(n)
        if t == "boolean":
            return True
        if t == "null":
            return None
        q = next(quoted, None)
        return (q[0] or q[1]) if q else "example"

    try:
        return make(schema)
    except (LookupError, TypeError, AttributeError, RecursionError):  # a schema it cannot follow
        return {}


@contextmanager
def serving(models: dict[str, FakeModel]) -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer(models).start()
    try:
        yield server
    finally:
        server.stop()


LOCAL_URLS = ("http://127.0.0.1:8081/v1", "http://127.0.0.1:8082/v1")
"""Where the docs' examples find the two local models (``avengers local start``)."""


def local_fakes() -> dict[str, FakeModel]:
    """Stand-ins for the two local models, under the ids their llama.cpp servers use:
    ``smollm2-135m`` answers arithmetic (three answers, two of them 391) and knows Spain's capital,
    ``gemma3-270m`` says 21."""
    return {
        "smollm2-135m": FakeModel(
            answers=["391", "The answer is 391.", "381"], keywords={"capital": ["Madrid."]}
        ),
        "gemma3-270m": FakeModel(answers=["21"]),
    }


def point_at(text: str, base_url: str) -> str:
    """``text`` (a doc block) with the local models' URLs replaced by ``base_url``."""
    for url in LOCAL_URLS:
        text = text.replace(url, base_url)
    return text


def doc_workspace(
    text: str,
    folder: Any,
    router: Any,
    base_url: str,
    monkeypatch: Any,
    *,
    tag: str = "",
    endpoints: str = "endpoints.yaml",
) -> None:
    """Set ``folder`` up as a doc's examples expect and make it the working directory: the
    doc's ``yaml`` block (the one tagged ``tag``, if given) pointed at ``base_url`` as
    ``endpoints``, and ``router`` saved as ``my-router``."""
    fence = "```yaml" + (f" {tag}" if tag else "") + "\n(.*?)```"
    (block,) = re.findall(fence, text, flags=re.S)
    (folder / endpoints).write_text(point_at(block, base_url))
    router.save_pretrained(folder / "my-router")
    monkeypatch.chdir(folder)


def main() -> None:  # pragma: no cover - manual use
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--models", default="model-a,model-b")
    args = ap.parse_args()
    models = {
        m: FakeModel(answers=[f"{m} says 42"], delay=args.delay) for m in args.models.split(",")
    }
    server = FakeOpenAIServer(models, port=args.port).start()
    print(f"serving {sorted(models)} at {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
