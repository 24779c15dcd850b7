"""An OpenAI-compatible server that routes, samples and votes behind one model name.

Point any OpenAI client at ``http://127.0.0.1:8000/v1`` and ask for model ``avengers``. The wire
format is OpenAI's; the routing account travels in an extra top-level ``avengers`` field (and in
the final chunk of a stream) plus ``x-avengers-*`` headers, which standard clients ignore.

Profiles (the requested ``model``):

* ``avengers`` -- the configured strategy (default: self-consistency, 10 samples, vote);
* ``avengers-fast`` -- one sample, cost-aware routing (``alpha`` 0.5);
* any candidate's name -- pinned to that candidate (still falls back if it fails).

Per-request overrides, as extra JSON fields (``extra_body`` in the openai client):
``n_samples``, ``alpha``, ``strategy``, ``answer_type``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from .answer import Answerer
from .exceptions import AvengersError, ConfigError
from .results import STRATEGIES, AnswerError, AnswerResult, SamplingConfig

DEFAULT_MAX_BODY = 1_000_000
DEFAULT_MAX_TOKENS = 4096
_OVERRIDES = ("n_samples", "alpha", "strategy", "answer_type")


@dataclass
class Profile:
    """A model name the server answers to, and the sampling settings it implies."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    prefer: str | None = None
    description: str = ""


def default_profiles(answerer: Answerer) -> dict[str, Profile]:
    out = {
        "avengers": Profile("avengers", {}, None, "route, sample and vote (configured strategy)"),
        "avengers-fast": Profile(
            "avengers-fast", {"strategy": "direct", "alpha": 0.5}, None,
            "one sample, cost-aware routing (alpha 0.5)",
        ),
    }  # fmt: skip
    for m in answerer.router.models_:
        if m in answerer.backend.models():
            out[m] = Profile(m, {}, m, f"pinned to {m}")
    return out


class Metrics:
    """Counters in the Prometheus text format (one process)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.buckets = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
        self.bucket_counts = [0] * len(self.buckets)
        self.routed: dict[str, int] = defaultdict(int)
        self.fallbacks = 0
        self.samples_drawn = 0
        self.samples_saved = 0
        self.upstream_failures: dict[tuple[str, str], int] = defaultdict(int)
        self.in_flight = 0

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for i, b in enumerate(self.buckets):
            if seconds <= b:
                self.bucket_counts[i] += 1

    def record(self, res: AnswerResult) -> None:
        self.routed[res.model] += 1
        self.fallbacks += res.fallback is not None
        self.samples_drawn += res.n_drawn
        self.samples_saved += res.samples_saved
        for f in res.failures:
            self.upstream_failures[(f.model, f.kind)] += f.count

    def render(self) -> str:
        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"')

        lines = [
            "# HELP avengers_requests_total HTTP requests by path and status.",
            "# TYPE avengers_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'avengers_requests_total{{path="{esc(path)}",status="{status}"}} {n}')
        lines += [
            "# HELP avengers_request_seconds Request latency.",
            "# TYPE avengers_request_seconds histogram",
        ]
        for b, n in zip(self.buckets, self.bucket_counts, strict=True):
            lines.append(f'avengers_request_seconds_bucket{{le="{b}"}} {n}')
        lines += [
            f'avengers_request_seconds_bucket{{le="+Inf"}} {self.latency_count}',
            f"avengers_request_seconds_sum {self.latency_sum:.6f}",
            f"avengers_request_seconds_count {self.latency_count}",
            "# HELP avengers_routed_total Answers by the model that gave them.",
            "# TYPE avengers_routed_total counter",
        ]
        for m, n in sorted(self.routed.items()):
            lines.append(f'avengers_routed_total{{model="{esc(m)}"}} {n}')
        lines += [
            "# TYPE avengers_fallbacks_total counter",
            f"avengers_fallbacks_total {self.fallbacks}",
            "# TYPE avengers_samples_drawn_total counter",
            f"avengers_samples_drawn_total {self.samples_drawn}",
            "# TYPE avengers_samples_saved_total counter",
            f"avengers_samples_saved_total {self.samples_saved}",
            "# TYPE avengers_upstream_failures_total counter",
        ]
        for (m, k), n in sorted(self.upstream_failures.items()):
            lines.append(f'avengers_upstream_failures_total{{model="{esc(m)}",kind="{k}"}} {n}')
        lines += ["# TYPE avengers_in_flight gauge", f"avengers_in_flight {self.in_flight}"]
        return "\n".join(lines) + "\n"


def load_api_keys(env: str = "AVENGERS_SERVER_KEYS", file: str | Path | None = None) -> set[str]:
    """Client keys the server accepts: comma-separated in an environment variable and/or one per
    line in a file. An empty set means no authentication."""
    keys = {k.strip() for k in os.environ.get(env, "").split(",") if k.strip()}
    if file is not None:
        p = Path(file)
        if not p.is_file():
            raise ConfigError(f"API key file not found: {p}")
        keys |= {
            ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")
        }
    return keys


def _error(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> Any:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def _messages_from(body: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _BadRequest("'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _BadRequest(f"messages[{i}] must be an object with a 'role'", f"messages[{i}]")
        c = m.get("content")
        if c is not None and not isinstance(c, (str, list)):
            raise _BadRequest(
                f"messages[{i}].content must be a string or a list of parts",
                f"messages[{i}].content",
            )
        out.append({"role": m["role"], "content": c})
    if not any(m["role"] == "user" for m in out):
        raise _BadRequest("at least one user message is needed to route on", "messages")
    return out


def _number(body: dict[str, Any], key: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    v = body.get(key)
    if v is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool) or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise _BadRequest(f"'{key}' must be {kind} in [{lo}, {hi}]", key)
    return v


def create_app(
    answerer: Answerer,
    *,
    profiles: dict[str, Profile] | None = None,
    api_keys: set[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The FastAPI app. Run it with uvicorn (``avengers serve`` does)."""
    from contextlib import asynccontextmanager

    from .embedders import BatchingEmbedder

    emb = answerer.router.get_embedder()
    if not isinstance(emb, BatchingEmbedder):  # one request = one query: batch them together
        answerer.router.set_embedder(BatchingEmbedder(emb))
    profs = profiles if profiles is not None else default_profiles(answerer)
    keys = set(api_keys or ())
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # load the embedding model now, not on the first user request
        await asyncio.to_thread(answerer.router.get_embedder().embed, ["warm-up"])
        yield
        await answerer._aclose()

    app = FastAPI(title="avengers router", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    app.state.answerer = answerer
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["*"],
                           allow_headers=["*"])  # fmt: skip

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        path = request.url.path
        metrics.in_flight += 1
        resp: Any = None
        try:
            resp = _precheck(request)
            if resp is None:
                resp = await call_next(request)
            return resp
        except Exception:  # never die on a request; never leak internals
            resp = _error(500, "internal server error", "server_error")
            return resp
        finally:
            metrics.in_flight -= 1
            status = getattr(resp, "status_code", 500)
            label = path if path.startswith("/v1/") else "other"
            metrics.observe(label, status, time.perf_counter() - t0)

    def _precheck(request: Request) -> Any:
        if keys and request.url.path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not any(hmac.compare_digest(token.encode(), k.encode()) for k in keys):
                return _error(401, "invalid or missing API key", "authentication_error",
                              "invalid_api_key")  # fmt: skip
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
                return _error(413, f"request body larger than {max_body_bytes} bytes",
                              "invalid_request_error", "request_too_large")  # fmt: skip
        return None

    async def read_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > max_body_bytes:
            raise _BadRequest(f"request body larger than {max_body_bytes} bytes", None, 413)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _BadRequest("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        return body

    def plan(body: dict[str, Any]) -> tuple[Profile, dict[str, Any], int | None]:
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise _BadRequest("'model' is required (e.g. 'avengers')", "model")
        prof = profs.get(name)
        if prof is None:
            raise _BadRequest(f"unknown model {name!r}; available: {sorted(profs)}", "model", 404)
        over = dict(prof.overrides)
        t = _number(body, "temperature", 0.0, 2.0)
        if t is not None:
            over["temperature"] = float(t)
        mt = _number(body, "max_tokens", 1, max_tokens_limit, integer=True)
        if mt is None:
            mt = _number(body, "max_completion_tokens", 1, max_tokens_limit, integer=True)
        n = _number(body, "n", 1, 1, integer=True)
        del n  # only n=1 is served: the server returns one (voted) answer
        ns = _number(body, "n_samples", 1, 64, integer=True)
        if ns is not None:
            over["n_samples"] = ns
        a = _number(body, "alpha", 0.0, 1.0)
        if a is not None:
            over["alpha"] = float(a)
        s = body.get("strategy")
        if s is not None:
            if s not in STRATEGIES:
                raise _BadRequest(f"'strategy' must be one of {list(STRATEGIES)}", "strategy")
            over["strategy"] = s
        at = body.get("answer_type")
        if at is not None:
            over["answer_type"] = at
        try:
            SamplingConfig().updated(**over)
        except ConfigError as e:
            raise _BadRequest(str(e)) from None
        return prof, over, mt

    def headers_for(res: AnswerResult) -> dict[str, str]:
        h = {
            "x-avengers-model": res.model,
            "x-avengers-strategy": res.strategy,
            "x-avengers-samples": str(res.n_drawn),
        }
        if res.decision is not None:
            h["x-avengers-cluster"] = str(res.decision.cluster)
        if res.fallback:
            h["x-avengers-fallback"] = "1"
        return h

    def usage(res: AnswerResult) -> dict[str, int]:
        return {
            "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens,
            "total_tokens": res.prompt_tokens + res.completion_tokens,
        }

    async def handle(request: Request, chat: bool) -> Any:
        try:
            body = await read_json(request)
            prof, over, mt = plan(body)
            if chat:
                msgs = _messages_from(body)
            else:
                prompt = body.get("prompt")
                if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                    prompt = prompt[0]
                if not isinstance(prompt, str) or not prompt.strip():
                    raise _BadRequest("'prompt' must be a non-empty string", "prompt")
                msgs = [{"role": "user", "content": prompt}]
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise _BadRequest("'stream' must be true or false", "stream")
        except _BadRequest as e:
            code = "model_not_found" if e.status == 404 else None
            return _error(e.status, e.message, "invalid_request_error", code, e.param)
        cid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if mt is not None:
            over["max_tokens"] = mt
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _stream(msgs, prof, over, cid, created, chat, include_usage),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        try:
            res = await answerer.aanswer(msgs, prefer=prof.prefer, **over)
        except AnswerError as e:
            return _upstream_error(e)
        except AvengersError as e:
            return _error(400, str(e), "invalid_request_error")
        metrics.record(res)
        if chat:
            choice: dict[str, Any] = {
                "index": 0, "message": {"role": "assistant", "content": res.text},
                "finish_reason": "stop", "logprobs": None,
            }  # fmt: skip
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": res.text, "finish_reason": "stop", "logprobs": None}
            obj = "text_completion"
        payload = {
            "id": cid, "object": obj, "created": created, "model": res.model,
            "choices": [choice], "usage": usage(res), "avengers": res.account(),
        }  # fmt: skip
        return JSONResponse(payload, headers=headers_for(res))

    def _upstream_error(e: AnswerError) -> Any:
        failures = [{"model": f.model, "kind": f.kind, "count": f.count} for f in e.failures]
        for f in e.failures:
            metrics.upstream_failures[(f.model, f.kind)] += f.count
        resp = _error(502, "every candidate model failed", "upstream_error", "upstream_failed")
        body = json.loads(resp.body)
        body["error"]["failures"] = failures
        return JSONResponse(body, status_code=502)

    async def _stream(
        msgs: list[dict[str, Any]], prof: Profile, over: dict[str, Any], cid: str, created: int,
        chat: bool, include_usage: bool,
    ) -> AsyncIterator[bytes]:  # fmt: skip
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(piece: str | None, finish: str | None, model: str, extra: dict[str, Any] | None = None,
                  first: bool = False) -> bytes:  # fmt: skip
            if chat:
                delta: dict[str, Any] = {}
                if first:
                    delta["role"] = "assistant"
                if piece is not None:
                    delta["content"] = piece
                ch: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                ch = {"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}
            d: dict[str, Any] = {
                "id": cid,
                "object": obj,
                "created": created,
                "model": model,
                "choices": [ch],
            }
            if extra:
                d.update(extra)
            return f"data: {json.dumps(d)}\n\n".encode()

        first = True
        try:
            async for part in answerer.astream(msgs, prefer=prof.prefer, **over):
                if part.result is None:
                    yield chunk(part.text, None, prof.name, first=first)
                    first = False
                    continue
                res = part.result
                metrics.record(res)
                yield chunk(None, "stop", res.model, {"avengers": res.account()}, first=first)
                if include_usage:
                    u = {"id": cid, "object": obj, "created": created, "model": res.model,
                         "choices": [], "usage": usage(res)}  # fmt: skip
                    yield f"data: {json.dumps(u)}\n\n".encode()
        except AnswerError as e:
            err = {"error": {"message": "every candidate model failed", "type": "upstream_error",
                             "code": "upstream_failed", "param": None,
                             "failures": [{"model": f.model, "kind": f.kind} for f in e.failures]}}  # fmt: skip
            yield f"data: {json.dumps(err)}\n\n".encode()
        except asyncio.CancelledError:
            raise
        except Exception:
            err = {"error": {"message": "internal server error", "type": "server_error",
                             "code": None, "param": None}}  # fmt: skip
            yield f"data: {json.dumps(err)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await handle(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, chat=False)

    @app.get("/v1/models")
    async def models() -> Any:
        data = [
            {"id": p.name, "object": "model", "created": 0, "owned_by": "avengers",
             "description": p.description}
            for p in profs.values()
        ]  # fmt: skip
        return {"object": "list", "data": data}

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Any:
        import httpx

        eps = getattr(answerer.backend, "endpoints", {})

        async def probe(name: str) -> tuple[str, bool]:
            ep = eps[name]
            try:
                async with httpx.AsyncClient(timeout=2.0) as c:
                    r = await c.get(ep.base_url.rstrip("/") + "/models")
                return name, r.status_code < 500
            except httpx.HTTPError:
                return name, False

        results = dict(await asyncio.gather(*(probe(n) for n in eps)))
        ok = bool(results) and any(results.values()) if eps else True
        body = {"status": "ready" if ok else "unavailable", "router": True, "endpoints": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prom() -> Any:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return _error(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(400, "invalid request", "invalid_request_error")

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used with several workers): settings come from
    ``AVENGERS_ROUTER``, ``AVENGERS_ENDPOINTS``, ``AVENGERS_CONFIG`` (JSON sampling settings),
    ``AVENGERS_SERVER_KEYS`` / ``AVENGERS_SERVER_KEY_FILE``, ``AVENGERS_MAX_BODY``,
    ``AVENGERS_MAX_TOKENS``, ``AVENGERS_CORS``."""
    from .bundled import load_pretrained
    from .router import Router

    rpath = os.environ.get("AVENGERS_ROUTER", "pretrained")
    router = load_pretrained() if rpath == "pretrained" else Router.from_pretrained(rpath)
    eps = os.environ.get("AVENGERS_ENDPOINTS")
    if not eps:
        raise ConfigError("AVENGERS_ENDPOINTS is not set")
    cfg = SamplingConfig(**json.loads(os.environ.get("AVENGERS_CONFIG", "{}")))
    cors = [o for o in os.environ.get("AVENGERS_CORS", "").split(",") if o]
    return create_app(
        Answerer(router, eps, cfg),
        api_keys=load_api_keys(file=os.environ.get("AVENGERS_SERVER_KEY_FILE") or None),
        max_body_bytes=int(os.environ.get("AVENGERS_MAX_BODY", DEFAULT_MAX_BODY)),
        max_tokens_limit=int(os.environ.get("AVENGERS_MAX_TOKENS", DEFAULT_MAX_TOKENS)),
        cors_origins=cors or None,
    )
