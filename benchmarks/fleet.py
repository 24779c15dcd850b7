"""A fleet on real parts (issue 28): three ``avengers serve`` replicas behind haproxy (the
recipe's own ``deploy/haproxy.cfg``) on one real ``redis-server``, with local fake upstreams.

``run_fleet`` drives 64 clients for a bounded time through the load balancer: conversation turns
(three per conversation, each turn possibly on another replica) and a rating of every answer.
Mid-run a new router version is written to the router folder (every replica swaps it in live)
and later one replica is killed (SIGKILL). It returns what the clients saw (each request's
start, end, status), the acknowledged ratings, each replica's learned statistics after the run,
the convergence delay of each acknowledged rating (until every live replica had absorbed it),
and what the store holds. ``tests/test_fleet.py`` asserts on it; run directly it prints the
figures of docs/benchmarks.md ("A fleet that learns as one"), including routed throughput with
1, 2 and 3 replicas behind the load balancer:

    .venv/bin/python benchmarks/fleet.py [--clients 64] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import chaos  # noqa: E402  (the upstream, Redis and toy router helpers)

QUESTIONS = [q for qs in chaos.QUESTIONS.values() for q in qs]


class Replica:
    """``python -m avengers serve`` (one worker) on the shared store, following its log."""

    def __init__(self, n: int, router_dir: Path, endpoints: Path, store: str, log: Path) -> None:
        self.n, self.port, self.log = n, chaos.free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable, "-m", "avengers", "serve", "-r", str(router_dir), "-e", str(endpoints),
            "--port", str(self.port), "--strategy", "direct", "--feedback-store", store,
            "--conversations", "store", "--request-timeout", "15", "--breaker-threshold", "0",
            "--follow-interval", "0.25", "--reload-interval", "0.5", "--drain-timeout", "5",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(self.cmd, env=env, stdout=f, stderr=f)
        return self

    def wait_ready(self, seconds: float = 240) -> None:
        chaos.wait_ready(self.url, self.proc, self.log, f"replica {self.n}", seconds)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        chaos.stop_process(self.proc, signal.SIGTERM, 30)
        self.proc = None


def haproxy_binary() -> str | None:
    import shutil

    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


class Balancer:
    """haproxy with deploy/haproxy.cfg; replicas beyond ``urls`` point at a closed port."""

    def __init__(self, urls: list[str], log: Path) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy not found (apt-get install haproxy)")
        self.port, self.log = chaos.free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        closed = f"127.0.0.1:{chaos.free_port()}"
        addrs = [u.removeprefix("http://") for u in urls] + [closed] * (3 - len(urls))
        self.env = {**os.environ, "AVENGERS_LB_BIND": f"127.0.0.1:{self.port}",
                    **{f"AVENGERS_REPLICA_{i + 1}": a for i, a in enumerate(addrs)}}  # fmt: skip
        self.cmd = [binary, "-db", "-f", str(ROOT / "deploy" / "haproxy.cfg")]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, expect: int) -> Balancer:
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=f, stderr=f)
        # haproxy marks a server up after its checks pass (rise 2, every 2 s)
        chaos.wait_ready(self.url, self.proc, self.log, "haproxy", 60)
        time.sleep(4.5)  # two more check rounds: every live replica is up
        return self

    def stop(self) -> None:
        chaos.stop_process(self.proc, signal.SIGTERM, 10)
        self.proc = None


@dataclass
class Request:
    kind: str
    t0: float
    t1: float
    status: int
    error: str | None = None


@dataclass
class FleetLoad:
    url: str
    clients: int
    seconds: float
    requests: list[Request] = field(default_factory=list)
    acked: list[tuple[int, float]] = field(default_factory=list)
    """(sequence number, time acknowledged) of every rating answered 200."""
    conversations: dict[str, list[str]] = field(default_factory=dict)
    """Conversation key -> the model of each of its turns."""
    degraded: set[str] = field(default_factory=set)
    """Conversations one of whose turns found the conversation store too busy (routed afresh,
    as issue 26's degradation says): not judged for stickiness."""
    not_remembered: int = 0
    retried: int = 0
    """Ratings answered 503 with Retry-After (the store was busy) and sent again."""
    """Answers served without being remembered (the store was busy): not rated."""
    stop: bool = False

    async def client(self, http: httpx.AsyncClient, k: int) -> None:
        rng = random.Random(k)
        i = 0
        while not self.stop:
            conv = f"client-{k}-{i // 3}"
            i += 1
            q = QUESTIONS[rng.randrange(len(QUESTIONS))]
            body = {"model": "avengers", "conversation": conv,
                    "messages": [{"role": "user", "content": q}]}  # fmt: skip
            t0 = time.monotonic()
            try:
                r = await http.post(f"{self.url}/v1/chat/completions", json=body)
            except httpx.HTTPError as e:
                self.requests.append(Request("chat", t0, time.monotonic(), 0, type(e).__name__))
                continue
            self.requests.append(Request("chat", t0, time.monotonic(), r.status_code))
            if r.status_code != 200:
                continue
            j = r.json()
            self.conversations.setdefault(conv, []).append(j["model"])
            if "conversation" in j["avengers"].get("unavailable", []):
                self.degraded.add(conv)  # the store was too busy: this turn was routed afresh
            if "feedback" in j["avengers"].get("unavailable", []):
                # the store was too busy to remember this answer (issue 26's degradation: the
                # answer is served, and says it cannot be rated)
                self.not_remembered += 1
                continue
            t0 = time.monotonic()
            score = rng.random()
            try:
                for _ in range(3):  # a 503 says "store busy, send it again after Retry-After"
                    fb = await http.post(
                        f"{self.url}/v1/feedback", json={"id": j["id"], "score": score}
                    )
                    if fb.status_code != 503 or "retry-after" not in fb.headers:
                        break
                    self.retried += 1
                    await asyncio.sleep(float(fb.headers["retry-after"]))
            except httpx.HTTPError as e:
                self.requests.append(Request("feedback", t0, time.monotonic(), 0, type(e).__name__))
                continue
            t1 = time.monotonic()
            self.requests.append(Request("feedback", t0, t1, fb.status_code))
            if fb.status_code == 200:
                self.acked.append((int(fb.json()["seq"]), t1))


async def watch_seqs(urls: list[str], out: dict[str, list[tuple[float, int]]], load: Any) -> None:
    """Poll each replica's applied sequence number (for the convergence delay)."""
    async with httpx.AsyncClient(timeout=5) as http:
        while not load.stop:
            for url in urls:
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    seq = (await http.get(f"{url}/v1/admin/learning")).json()["seq"]
                    out.setdefault(url, []).append((time.monotonic(), int(seq)))
            await asyncio.sleep(0.05)


def convergence_delays(
    acked: list[tuple[int, float]], seqs: dict[str, list[tuple[float, int]]], urls: list[str]
) -> list[float]:
    """For each acknowledged rating: seconds until every replica in ``urls`` showed a sequence
    number at or past it (ratings never reached by some replica's samples are left out)."""
    delays = []
    for seq, t_ack in acked:
        reached = []
        for url in urls:
            times = [t for t, s in seqs.get(url, []) if s >= seq]
            if not times:
                break
            reached.append(min(times))
        else:
            delays.append(max(0.0, max(reached) - t_ack))
    return delays


def new_version(router_dir: Path, store_url: str) -> int:
    """What an operator runs mid-run: `avengers snapshot` of the store into the router folder
    (written atomically), with a changed setting. Returns the version's sequence number."""
    from avengers import Router
    from avengers.stores.feedback import open_store
    from avengers.stores.snapshot import SEQ_KEY, apply_store, save_atomically

    router = Router.from_pretrained(router_dir)
    store = open_store(store_url)
    apply_store(router, store)
    store.close()
    router.set_params(alpha=0.95)
    save_atomically(router, router_dir)
    return int(router.training_summary_.get(SEQ_KEY, 0))


def run_fleet(
    folder: Path, clients: int = 64, seconds: float = 20.0, *, swap_at: float = 0.35,
    kill_at: float | None = 0.6, restart: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The fleet run; see the module docstring. ``restart``: start the killed replica again
    after the load and include it in the final comparison."""
    from avengers.stores.feedback import open_store

    folder.mkdir(parents=True, exist_ok=True)
    router_dir = chaos.toy_router_dir(folder)
    up = chaos.Upstream().start()
    redis = chaos.Redis(folder / "redis").start()
    eps = chaos.endpoints_file(folder, up, up)
    replicas = [Replica(i + 1, router_dir, eps, redis.url, folder / f"replica{i + 1}.log")
                for i in range(3)]  # fmt: skip
    lb: Balancer | None = None
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        lb = Balancer([r.url for r in replicas], folder / "haproxy.log").start(3)
        load = FleetLoad(lb.url, clients, seconds)
        seqs: dict[str, list[tuple[float, int]]] = {}
        events: dict[str, float] = {}
        version_seq: list[int] = []

        async def script() -> None:
            await asyncio.sleep(seconds * swap_at)
            for _ in range(100):  # a version that records ratings (the first answers are slow)
                if len(load.acked) >= 20:
                    break
                await asyncio.sleep(0.1)
            events["swap"] = time.monotonic()
            version_seq.append(await asyncio.to_thread(new_version, router_dir, redis.url))
            if kill_at is not None:
                await asyncio.sleep(seconds * (kill_at - swap_at))
                events["kill"] = time.monotonic()
                replicas[2].kill()
            await asyncio.sleep(seconds * (1 - (kill_at or swap_at)))
            load.stop = True

        async def main() -> None:
            limits = httpx.Limits(max_connections=clients + 8)
            async with httpx.AsyncClient(timeout=30, limits=limits) as http:
                await asyncio.gather(
                    script(), watch_seqs([r.url for r in replicas], seqs, load),
                    *(load.client(http, k) for k in range(clients)),
                )  # fmt: skip

        started = time.monotonic()
        asyncio.run(main())
        ended = time.monotonic()
        delays = convergence_delays(load.acked, seqs, [r.url for r in replicas if r.proc])
        restarted = False
        if restart and replicas[2].proc is None:
            # the killed replica comes back: it loads the version on disk and catches up with
            # the log from the sequence number that version records
            replicas[2].start().wait_ready()
            restarted = True
        live = [r for r in replicas if r.proc is not None]
        store = open_store(redis.url)
        logged = store.ratings(0)
        last = logged[-1].seq if logged else 0

        def learned() -> list[dict[str, Any]]:
            return [httpx.get(f"{r.url}/v1/admin/learning", timeout=10).json() for r in live]

        deadline = time.monotonic() + 30
        states = learned()
        # replicas 1 and 2 swapped to version 2 live; a restarted replica 3 loaded it at start
        while any(
            s["seq"] != last or (i < 2 and s.get("version") != 2) for i, s in enumerate(states)
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
            states = learned()
        store.close()
        return {
            "clients": clients, "seconds": round(ended - started, 1), "events": events,
            "requests": load.requests, "acked": load.acked, "conversations": load.conversations,
            "logged": logged, "version_seq": version_seq[0] if version_seq else None,
            "router_dir": router_dir, "states": states, "delays": delays,
            "not_remembered": load.not_remembered, "degraded": load.degraded,
            "retried": load.retried, "restarted": restarted,
        }  # fmt: skip
    finally:
        if lb is not None:
            lb.stop()
        for r in replicas:
            r.stop()
        redis.kill()
        up.kill()


def throughput(folder: Path, n_replicas: int, clients: int = 64, seconds: float = 10.0) -> float:
    """Routed requests per second (POST /v1/route) through haproxy to ``n_replicas`` replicas."""
    folder.mkdir(parents=True, exist_ok=True)
    router_dir = chaos.toy_router_dir(folder)
    up = chaos.Upstream().start()
    redis = chaos.Redis(folder / "redis").start()
    eps = chaos.endpoints_file(folder, up, up)
    replicas = [Replica(i + 1, router_dir, eps, redis.url, folder / f"t{i + 1}.log")
                for i in range(n_replicas)]  # fmt: skip
    lb = None
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        lb = Balancer([r.url for r in replicas], folder / "thaproxy.log").start(n_replicas)
        done = 0
        stop = time.monotonic() + seconds

        async def one(http: httpx.AsyncClient, k: int) -> None:
            nonlocal done
            while time.monotonic() < stop:
                q = QUESTIONS[(k + done) % len(QUESTIONS)]
                r = await http.post(f"{lb.url}/v1/route", json={"query": q})
                if r.status_code == 200:
                    done += 1

        async def main() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                await asyncio.gather(*(one(http, k) for k in range(clients)))

        t0 = time.monotonic()
        asyncio.run(main())
        return done / (time.monotonic() - t0)
    finally:
        if lb is not None:
            lb.stop()
        for r in replicas:
            r.stop()
        redis.kill()
        up.kill()


def summary(out: dict[str, Any]) -> dict[str, Any]:
    reqs: list[Request] = out["requests"]
    kill = out["events"].get("kill")
    swap = out["events"]["swap"]
    failed = [r for r in reqs if r.status != 200]
    in_flight = [r for r in failed if kill is not None and r.t0 <= kill <= r.t1 + 0.05]
    near_swap = [r for r in reqs if swap - 1 <= r.t0 <= swap + 5]
    d = np.array(out["delays"]) if out["delays"] else np.array([np.nan])
    return {
        "requests": len(reqs), "failed": len(failed), "failed in flight on the killed replica":
        len(in_flight), "acknowledged ratings": len(out["acked"]),
        "ratings per second": round(len(out["acked"]) / out["seconds"], 1),
        "answers not remembered (store busy)": out["not_remembered"],
        "ratings sent again after a 503 Retry-After (store busy)": out["retried"],
        "conversations with a turn routed afresh (store busy)": len(out["degraded"]),
        "requests within the swap window": len(near_swap),
        "failed within the swap window (not in flight on the killed replica)": sum(
            r.status != 200 and r not in in_flight for r in near_swap
        ),
        "convergence p50 s": round(float(np.nanpercentile(d, 50)), 3),
        "convergence p99 s": round(float(np.nanpercentile(d, 99)), 3),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[str, Any] = {}
        for clients in (8, args.clients):  # two rating rates
            out = run_fleet(Path(tmp) / f"fleet{clients}", clients, args.seconds)
            results[f"fleet, {clients} clients"] = summary(out)
            print(json.dumps({f"fleet, {clients} clients": results[f"fleet, {clients} clients"]}))
        for n in (1, 2, 3):
            rps = throughput(Path(tmp) / f"tp{n}", n, args.clients)
            results[f"route-only req/s, {n} replica(s)"] = round(rps, 1)
            print(json.dumps({f"route-only req/s, {n} replica(s)": round(rps, 1)}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
