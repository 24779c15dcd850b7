"""Chaos run of ``avengers serve`` (issue 26): stores and an upstream fail under load.

Real processes only: ``avengers serve --workers 2`` in front of local fake upstreams (each its
own process, ``tests/fake_openai_server.py``), a real ``redis-server`` as the feedback and
conversation store, and 64 concurrent clients sending a mix of route-only requests, plain,
streamed and conversation completions, and ratings of the answers they got. While they run:

* Redis phase: baseline; ``redis-server`` killed (SIGKILL); restarted; stalled (SIGSTOP);
  resumed (SIGCONT); one upstream killed in the middle of its streamed answers; it comes back.
* SQLite phase (needs root to mount a 16 MiB tmpfs; skipped otherwise): a second server on an
  SQLite store on that tmpfs; baseline; the disk filled to the last byte; space freed again.

The script prints the requests, the responses by status and error code, p50/p99 per phase and
kind, the store state changes ``/ready`` showed, and whether every acknowledged rating is in the
store afterwards. ``tests/test_chaos.py`` runs it and asserts the figures.

    .venv/bin/python benchmarks/chaos.py [--clients 64] [--scale 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

QUESTIONS = {
    "math": ["What is 17 times 23?", "Compute 481 plus 932.", "What is 144 divided by 12?"],
    "cook": ["How long should I boil an egg for a runny yolk?", "How do I make pancakes fluffy?"],
    "code": [
        "Write a Python function that reverses a string.",
        "Implement binary search in Python.",
    ],
}

_UPSTREAM = """
import sys, threading
sys.path.insert(0, {tests!r})
from fake_openai_server import FakeModel, FakeOpenAIServer
long = " ".join(["step"] * 30)
models = {{
    "math": FakeModel(answers=["391"], delay=0.02),
    "chef": FakeModel(answers=["boil it for six minutes then cool it"], delay=0.02,
                      chunk_delay=0.01),
    "coder": FakeModel(answers=[long], delay=0.02, chunk_delay=0.03),
}}
FakeOpenAIServer(models, port=int(sys.argv[1])).start()
print("up", flush=True)
threading.Event().wait()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, log: Path, what: str,
               seconds: float) -> None:  # fmt: skip
    """Poll ``url``/ready until it answers 200; raise with the log's tail if ``proc`` exits, or
    when ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not become ready in {seconds:g} s: {log.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int, seconds: float) -> None:
    """Send ``sig`` and wait ``seconds`` for ``proc`` to end, then kill it."""
    if proc is None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Upstream:
    """A fake OpenAI-compatible upstream in its own process (so it can really die)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Upstream:
        code = _UPSTREAM.format(tests=str(TESTS))
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.port)],
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "up"
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class Redis:
    """A real redis-server (append-only, fsync always) that can be killed, stalled, restarted."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class Server:
    """``python -m avengers serve`` with two workers."""

    def __init__(self, router_dir: Path, endpoints: Path, store: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.cmd = [
            sys.executable, "-m", "avengers", "serve", "-r", str(router_dir), "-e", str(endpoints),
            "--port", str(self.port), "--workers", "2", "--strategy", "direct",
            "--feedback-store", store, "--conversations", "store", "--store-timeout", "0.5",
            "--request-timeout", "15", "--breaker-threshold", "0",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(self.cmd, env=env, stdout=f, stderr=f)
        wait_ready(self.url, self.proc, self.log, "the server", 300)
        return self

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT, 30)
        self.proc = None


@dataclass
class Record:
    phase: str
    kind: str
    status: int
    code: str | None
    latency: float
    outcome: str
    """``complete``, ``error`` (a clear error with a code) or ``broken`` (anything else)."""


@dataclass
class Load:
    """64 clients and what they saw."""

    url: str
    clients: int
    phase: str = "start"
    records: list[Record] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    """Response ids whose rating the server acknowledged (200)."""
    store_states: list[tuple[float, str, str]] = field(default_factory=list)
    """(seconds into the run, phase, store state) each time ``/ready`` showed a change."""
    stop: bool = False
    _started: dict[float, str] = field(default_factory=dict)
    _to_rate: dict[int, str] = field(default_factory=dict)

    def add(self, kind: str, status: int, code: str | None, t0: float, outcome: str) -> None:
        """Record one response, under the phase its request started in."""
        phase = self._started.pop(t0, self.phase)
        self.records.append(Record(phase, kind, status, code, time.perf_counter() - t0, outcome))

    async def client(self, http: httpx.AsyncClient, k: int) -> None:
        i = k
        while not self.stop:
            i += 1
            await self.client_once(http, k, i)

    async def client_once(self, http: httpx.AsyncClient, k: int, i: int) -> None:
        """Client ``k``'s ``i``-th request (its kind and question follow from ``i``)."""
        kind = ("route", "route", "chat", "stream", "conversation", "route", "feedback",
                "stream")[i % 8]  # fmt: skip
        topic = ("math", "cook", "code")[(i // 8 + k) % 3]
        q = QUESTIONS[topic][i % len(QUESTIONS[topic])]
        t0 = time.perf_counter()
        self._started[t0] = self.phase
        try:
            if kind == "route":
                r = await http.post(f"{self.url}/v1/route", json={"query": q})
                self.judge(kind, r, t0, lambda j: bool(j.get("model")))
            elif kind in ("chat", "conversation"):
                body: dict[str, Any] = {"model": "avengers",
                                        "messages": [{"role": "user", "content": q}]}  # fmt: skip
                if kind == "conversation":
                    body["conversation"] = f"client-{k}"
                r = await http.post(f"{self.url}/v1/chat/completions", json=body)
                j = self.judge(kind, r, t0, lambda j: bool(j["choices"][0]["message"]["content"]))
                if j is not None and "feedback" not in j["avengers"]["unavailable"]:
                    self._to_rate[k] = j["id"]
            elif kind == "stream":
                await self.stream(http, q, t0)
            elif (rid := self._to_rate.pop(k, None)) is not None:
                r = await http.post(f"{self.url}/v1/feedback", json={"id": rid, "score": 1})
                if self.judge(kind, r, t0, lambda j: j.get("applied") is True) is not None:
                    self.acknowledged.append(rid)
        except httpx.HTTPError as e:
            self.add(kind, 0, type(e).__name__, t0, "broken")

    def judge(self, kind: str, r: httpx.Response, t0: float, complete: Any) -> Any:
        try:
            j = r.json()
        except ValueError:
            self.add(kind, r.status_code, None, t0, "broken")
            return None
        if r.status_code == 200:
            ok = False
            with contextlib.suppress(Exception):
                ok = bool(complete(j))
            self.add(kind, 200, None, t0, "complete" if ok else "broken")
            return j if ok else None
        code = (j.get("error") or {}).get("code") if isinstance(j, dict) else None
        self.add(kind, r.status_code, code, t0, "error" if (code and r.status_code < 500) or
                 code in ("upstream_failed", "store_unavailable", "deadline_exceeded") else "broken")  # fmt: skip
        return None

    async def stream(self, http: httpx.AsyncClient, q: str, t0: float) -> None:
        body = {"model": "avengers", "stream": True, "messages": [{"role": "user", "content": q}]}
        async with http.stream("POST", f"{self.url}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                self.judge("stream", r, t0, lambda j: False)
                return
            events = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
        done = bool(events) and events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]] if done else []
        errors = [c["error"] for c in chunks if "error" in c]
        finished = any(c.get("choices") and c["choices"][0].get("finish_reason") for c in chunks)
        if not done:
            self.add("stream", 200, None, t0, "broken")
        elif errors:
            code = errors[0].get("code")
            self.add("stream", 200, code, t0, "error" if code else "broken")
        else:
            self.add("stream", 200, None, t0, "complete" if finished else "broken")

    async def monitor(self, http: httpx.AsyncClient, started: float) -> None:
        last = None
        while not self.stop:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                state = (await http.get(f"{self.url}/ready", timeout=5)).json()["store"]["state"]
                if state != last:
                    self.store_states.append((round(time.monotonic() - started, 1), self.phase,
                                              state))  # fmt: skip
                    last = state
            await asyncio.sleep(0.25)


async def drive(url: str, clients: int, script: list[tuple[str, Any, float]]) -> Load:
    """Run ``clients`` clients while ``script`` plays: (phase, action or None, seconds)."""
    load = Load(url, clients)
    await warm_up(url)
    # idle connections are dropped before the server's 5 s keep-alive timeout would close them
    # under a request (a client-side race that is no fault of the server)
    limits = httpx.Limits(
        max_connections=clients + 4, max_keepalive_connections=clients + 4, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        started = time.monotonic()
        tasks = [asyncio.create_task(load.client(http, k)) for k in range(clients)]
        tasks.append(asyncio.create_task(load.monitor(http, started)))
        for phase, action, seconds in script:
            if action is not None:
                await asyncio.to_thread(action)
            load.phase = phase
            await asyncio.sleep(seconds)
        load.stop = True
        await asyncio.gather(*tasks)
    return load


async def warm_up(url: str, n: int = 16) -> None:
    """The first requests of each worker (lazy imports, first connections) before the clock
    starts: each kind of request, on fresh connections so both workers see them."""
    load = Load(url, n, phase="warm-up")

    async def one(k: int) -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            for kind in range(8):
                load.stop = False
                await load.client_once(http, k, kind)

    await asyncio.gather(*(one(k) for k in range(n)))


def figures(load: Load) -> dict[str, Any]:
    """Counts and latencies of a run (what the script prints)."""
    by: dict[str, list[Record]] = defaultdict(list)
    for r in load.records:
        by[r.phase].append(r)
    phases: dict[str, Any] = {}
    for phase, recs in by.items():
        row: dict[str, Any] = {"requests": len(recs)}
        for kind in ("route", "chat", "stream", "conversation", "feedback"):
            lat = [r.latency for r in recs if r.kind == kind]
            if lat:
                row[kind] = {"n": len(lat), "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
                             "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1)}  # fmt: skip
        row["responses"] = dict(Counter(f"{r.status} {r.code or ''}".strip() for r in recs))
        phases[phase] = row
    return {
        "requests": len(load.records),
        "responses": dict(Counter(f"{r.status} {r.code or ''}".strip() for r in load.records)),
        "outcomes": dict(Counter(r.outcome for r in load.records)),
        "status_500": sum(r.status == 500 for r in load.records),
        "phases": phases,
        "store_states": load.store_states,
        "acknowledged_ratings": len(load.acknowledged),
    }


def route_p99(load: Load, phase: str) -> float:
    lat = [r.latency for r in load.records if r.phase == phase and r.kind == "route"]
    return float(np.percentile(lat, 99)) if lat else float("nan")


def toy_router_dir(folder: Path) -> Path:
    """The tests' toy router (three topics, three models) on the static embedder (cheap, so
    the figures show the server and its stores rather than the embedding model)."""
    from avengers import Router
    from avengers.embedding.static import StaticEmbedder
    from toy import toy_rows

    out = folder / "router"
    if not out.exists():
        Router.paper(3, embedder=StaticEmbedder()).fit(toy_rows()).save_pretrained(out)
    return out


def endpoints_file(folder: Path, up: Upstream, down: Upstream) -> Path:
    eps = {"math-model": {"base_url": up.base_url, "model": "math", "max_retries": 0},
           "chef-model": {"base_url": up.base_url, "model": "chef", "max_retries": 0},
           "code-model": {"base_url": down.base_url, "model": "coder", "max_retries": 0}}  # fmt: skip
    path = folder / "endpoints.json"
    path.write_text(json.dumps({"endpoints": eps}))
    return path


def redis_chaos(folder: Path, clients: int = 64, scale: float = 1.0) -> dict[str, Any]:
    """The Redis phase; returns its figures plus ``lost`` (acknowledged ratings missing from
    the store), ``resumed`` and the route p99 of the baseline and the stall."""
    from avengers.stores.feedback import RedisFeedbackStore

    redis = Redis(folder / "redis").start()
    up, down = Upstream().start(), Upstream().start()
    server = Server(toy_router_dir(folder), endpoints_file(folder, up, down), redis.url,
                    folder / "server-redis.log")  # fmt: skip
    try:
        server.start()
        s = scale
        script: list[tuple[str, Any, float]] = [
            ("baseline", None, 6 * s),
            ("redis killed", redis.kill, 5 * s),
            ("redis restarted", redis.start, 4 * s),
            ("redis stalled", lambda: redis.signal(signal.SIGSTOP), 6 * s),
            ("redis resumed", lambda: redis.signal(signal.SIGCONT), 4 * s),
            ("upstream died", down.kill, 4 * s),
            ("upstream back", down.start, 3 * s),
        ]
        load = asyncio.run(drive(server.url, clients, script))
        out = figures(load)
        out["resumed"] = resumed(server.url)
        store = RedisFeedbackStore(redis.url)
        rated = {r.response_id for r in store.ratings()}
        store.close()
        out["lost"] = sorted(set(load.acknowledged) - rated)
        out["route_p99_ms"] = {p: round(1000 * route_p99(load, p), 1)
                               for p in ("baseline", "redis stalled")}  # fmt: skip
        return out
    finally:
        server.stop()
        up.kill()
        down.kill()
        redis.kill()


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "16m") -> Iterator[Path | None]:
    """A real size-limited tmpfs (None when it cannot be mounted: not root)."""
    where = folder / "disk"
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield None
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()


def sqlite_chaos(folder: Path, clients: int = 64, scale: float = 1.0) -> dict[str, Any] | None:
    """The SQLite phase on a 16 MiB tmpfs (room for the WAL) filled mid-run; None when no
    tmpfs can be mounted."""
    from avengers.stores.feedback import SQLiteFeedbackStore

    with small_tmpfs(folder) as disk:
        if disk is None:
            return None
        up, down = Upstream().start(), Upstream().start()
        db = disk / "fb.db"
        server = Server(toy_router_dir(folder), endpoints_file(folder, up, down), str(db),
                        folder / "server-sqlite.log")  # fmt: skip
        try:
            server.start()
            s = scale
            script: list[tuple[str, Any, float]] = [
                ("sqlite baseline", None, 4 * s),
                ("disk full", lambda: fill(disk), 5 * s),
                ("disk freed", lambda: (disk / "filler").unlink(), 4 * s),
            ]
            load = asyncio.run(drive(server.url, clients, script))
            out = figures(load)
            out["resumed"] = resumed(server.url)
            store = SQLiteFeedbackStore(db)
            rated = {r.response_id for r in store.ratings()}
            store.close()
            out["lost"] = sorted(set(load.acknowledged) - rated)
            return out
        finally:
            server.stop()
            up.kill()
            down.kill()


def resumed(url: str, tries: int = 8) -> bool:
    """After the run, without any restart: the store is ready, and answers on every worker are
    remembered and can be rated."""
    with httpx.Client(timeout=30) as http:
        if http.get(f"{url}/ready").json().get("store", {}).get("state") != "ok":
            time.sleep(1.0)
        for i in range(tries):
            with httpx.Client(timeout=30) as fresh:  # a new connection: either worker
                body = {"model": "avengers", "messages": [{"role": "user",
                        "content": f"What is {i} plus 1?"}]}  # fmt: skip
                j = fresh.post(f"{url}/v1/chat/completions", json=body).json()
                if j["avengers"]["unavailable"]:
                    return False
                r = fresh.post(f"{url}/v1/feedback", json={"id": j["id"], "score": 1})
                if r.status_code != 200:
                    return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--scale", type=float, default=1.0, help="Phase length factor.")
    ap.add_argument("--json", type=Path, help="Also write the figures here.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = {"redis": redis_chaos(Path(tmp), args.clients, args.scale),
               "sqlite": sqlite_chaos(Path(tmp), args.clients, args.scale)}  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
