"""The server's fast path, MiniLM and static side by side in one run (issue 19).

Two routers are fitted with the package's default ``Router()`` on the dcrouter training split,
one per embedder, and each is served by ``avengers serve`` (one worker, in its own process, the
default in-memory query cache) in front of one instant local upstream (the deterministic fake
OpenAI server, its own process) that serves every candidate. At 64 concurrent clients:

* **route only**: ``POST /v1/route``, the decision without any model call;
* **routed**: ``POST /v1/chat/completions`` with profile ``avengers-fast`` (one sample of the
  chosen model), next to the same requests sent straight to the upstream; the difference of the
  latency percentiles is what the server adds.

Closed loop (each client sends its next request when the last is answered) measures throughput:
at 64 clients on 2 shared cores the latency is mostly queueing. The routed/direct pair is then
run again **paced**: the 64 clients together send ``--rate`` requests/s (default 40, below the
routed path's capacity), so the added latency is the routing overhead rather than a queue.

Every request of the whole run carries a distinct query (a dcrouter test question tagged with
the run, its row and its request number: :func:`plan_rows`), so neither the server's in-memory
query cache nor its disk cache of embeddings ever answers: every routed request is embedded. The load generator is a minimal HTTP/1.1 keep-alive client on raw
asyncio streams (an httpx client costs more CPU per request than the server under test). It
prints requests/s, p50/p99 latency and failures (a non-200 status or a lost connection).

    .venv/bin/python benchmarks/server_speed.py [--requests 3000] [--clients 64] [--rate 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_BROKEN = (OSError, asyncio.IncompleteReadError, IndexError, ValueError)
"""What a lost or garbled connection raises in :func:`_post`."""


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes
) -> bool:
    """One POST on a keep-alive connection, its response read whole; True for a 200."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status_line.split(b" ")[1:2] == [b"200"]


async def _one_connection(
    port: int, jobs: asyncio.Queue[tuple[str, bytes]], lat: list[float], failed: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            try:
                path, body = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                ok = await _post(reader, writer, path, body)
            except _BROKEN:
                ok = False
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            lat.append(time.perf_counter() - t0)
            failed[0] += not ok
    finally:
        writer.close()


async def drive(port: int, requests: list[tuple[str, bytes]], clients: int) -> dict[str, float]:
    jobs: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for r in requests:
        jobs.put_nowait(r)
    lat: list[float] = []
    failed = [0]
    t0 = time.perf_counter()
    await asyncio.gather(*(_one_connection(port, jobs, lat, failed) for _ in range(clients)))
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    lost = len(requests) - len(lat)
    return {
        "rps": len(requests) / wall,
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "failed": float(failed[0] + lost),
    }


async def _paced_connection(
    port: int,
    jobs: list[tuple[int, str, bytes]],
    t0: float,
    rate: float,
    lat: list[float],
    failed: list[int],
) -> None:
    """Send ``jobs`` (number, path, body) on one keep-alive connection, request ``j`` not
    before ``t0 + j / rate`` (late ones go at once): an offered load the client does not
    raise when the server slows down."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for j, path, body in jobs:
            delay = t0 + j / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = time.perf_counter()
            try:
                ok = await _post(reader, writer, path, body)
            except _BROKEN:
                ok = False
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            lat.append(time.perf_counter() - t)
            failed[0] += not ok
    finally:
        writer.close()


async def drive_paced(
    port: int, requests: list[tuple[str, bytes]], clients: int, rate: float
) -> dict[str, float]:
    """Like :func:`drive`, but the ``clients`` connections together send ``rate`` requests/s
    (request ``j`` on connection ``j % clients``)."""
    lat: list[float] = []
    failed = [0]
    per: list[list[tuple[int, str, bytes]]] = [[] for _ in range(clients)]
    for j, (path, body) in enumerate(requests):
        per[j % clients].append((j, path, body))
    t0 = time.perf_counter() + 0.2
    await asyncio.gather(*(_paced_connection(port, p, t0, rate, lat, failed) for p in per))
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "rps": len(requests) / wall,
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "failed": float(failed[0] + len(requests) - len(lat)),
    }


def wait_up(port: int, path: str, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"nothing answered on port {port} within {timeout:.0f} s")


def request_bodies(
    questions: list[str], models: list[str], kind: str, tag: str, count: int
) -> list[tuple[str, bytes]]:
    """``count`` requests of one row (``route``: ``/v1/route``; ``routed``: profile
    ``avengers-fast``; ``direct``: straight to the upstream), each text tagged with ``tag``."""
    out = []
    for i in range(count):
        q = f"{questions[i % len(questions)]} (#{tag}-{i})"
        msgs = [{"role": "user", "content": q}]
        if kind == "route":
            out.append(("/v1/route", json.dumps({"messages": msgs}).encode()))
        elif kind == "routed":
            body = {"model": "avengers-fast", "messages": msgs}
            out.append(("/v1/chat/completions", json.dumps(body).encode()))
        else:
            body = {"model": models[i % len(models)], "messages": msgs}
            out.append(("/v1/chat/completions", json.dumps(body).encode()))
    return out


def plan_rows(
    questions: list[str],
    models: list[str],
    labels: list[str],
    n: int,
    paced: int,
    warmup: int = 200,
    run: str | None = None,
) -> dict[tuple[str, str], list[tuple[str, bytes]]]:
    """Every row's requests, keyed by (embedder label, row), with texts no other row (and no
    earlier run: ``run`` defaults to the clock) uses, so no cache answers a measured request."""
    run = run or str(time.time_ns())
    rows: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    for label in labels:
        for row, kind, count in (
            ("warm-up route", "route", warmup), ("warm-up routed", "routed", warmup),
            ("route only", "route", n), ("direct", "direct", n), ("routed", "routed", n),
            ("paced direct", "direct", paced), ("paced routed", "routed", paced),
        ):  # fmt: skip
            tag = f"{run}-{label}-{row.replace(' ', '-')}"
            rows[(label, row)] = request_bodies(questions, models, kind, tag, count)
    rows[("upstream", "warm-up direct")] = request_bodies(
        questions, models, "direct", f"{run}-upstream-warm-up", warmup
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument(
        "--rate", type=float, default=40.0, help="offered load of the paced rows (requests/s)"
    )
    ap.add_argument("--paced-requests", type=int, default=600, help="requests per paced row")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument(
        "--train-rows",
        type=int,
        default=None,
        help="fit the routers on the first N training queries only (speed figures do not depend "
        "on the fit; embedding all 5,608 with MiniLM takes minutes on a busy machine)",
    )
    ap.add_argument(
        "--embedders",
        nargs="+",
        choices=["MiniLM", "static"],
        default=["MiniLM", "static"],
        help="which routers to serve (default both, side by side)",
    )
    args = ap.parse_args()

    from avengers import Router
    from avengers.training.datasets import load_dcrouter

    train = load_dcrouter("train", args.data_dir, with_price=False)
    if args.train_rows:
        train = train.subset(np.arange(min(args.train_rows, len(train))))
    test = load_dcrouter("test", args.data_dir, with_price=False)
    models = list(train.models)
    tmp = Path(tempfile.mkdtemp(prefix="avengers-server-speed-"))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": f"{ROOT / 'shared'}:{os.environ.get('PYTHONPATH', '')}",
    }
    procs: list[subprocess.Popen[bytes]] = []
    up_port = free_port()
    fake = ROOT / "tests" / "fake_openai_server.py"
    procs.append(
        subprocess.Popen(
            [sys.executable, str(fake), "--port", str(up_port), "--models", ",".join(models)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    up_url = f"http://127.0.0.1:{up_port}/v1"
    endpoints = {m: {"base_url": up_url, "max_concurrency": 256, "max_retries": 0} for m in models}
    (tmp / "e.json").write_text(json.dumps({"endpoints": endpoints}))
    servers: dict[str, int] = {}
    try:
        for label, spec in (("MiniLM", None), ("static", "static")):
            if label not in args.embedders:
                continue
            router = Router(embedder=spec).fit(train)
            router.save_pretrained(tmp / label, model_card=False)
            port = free_port()
            cmd = [sys.executable, "-m", "avengers", "serve", "-e", str(tmp / "e.json")]
            cmd += ["--router", str(tmp / label), "--port", str(port)]
            procs.append(
                subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            servers[label] = port
        wait_up(up_port, "/v1/models")
        for port in servers.values():
            wait_up(port, "/health")

        questions = [q[:2000] for q in test.queries]
        n, c = args.requests, args.clients

        rows = plan_rows(questions, models, list(servers), n, args.paced_requests)
        results: dict[tuple[str, str], dict[str, float]] = {}
        for label, port in servers.items():  # warm-up
            asyncio.run(drive(port, rows[(label, "warm-up route")], c))
            asyncio.run(drive(port, rows[(label, "warm-up routed")], c))
        asyncio.run(drive(up_port, rows[("upstream", "warm-up direct")], c))
        load = os.getloadavg()[0]
        for label, port in servers.items():
            results[(label, "route only")] = asyncio.run(
                drive(port, rows[(label, "route only")], c)
            )
            results[(label, "direct")] = asyncio.run(drive(up_port, rows[(label, "direct")], c))
            results[(label, "routed")] = asyncio.run(drive(port, rows[(label, "routed")], c))
            # the same two at a fixed offered load below either path's capacity
            rate = args.rate
            results[(label, "paced direct")] = asyncio.run(
                drive_paced(up_port, rows[(label, "paced direct")], c, rate)
            )
            results[(label, "paced routed")] = asyncio.run(
                drive_paced(port, rows[(label, "paced routed")], c, rate)
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)

    print(f"\n{n} requests per row (every text fresh), {c} concurrent clients, 1 server worker; "
          f"load average {load:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print("| embedder | path | req/s | p50 (ms) | p99 (ms) | failed |")
    print("|---|---|---|---|---|---|")
    for label in servers:
        for path in ("route only", "direct", "routed"):
            r = results[(label, path)]
            name = "upstream directly" if path == "direct" else path
            print(f"| {label} | {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                  f"{r['failed']:.0f} |")  # fmt: skip
    print("\n| embedder | load | routed: added p50 (ms) | added p99 (ms) | failed |")
    print("|---|---|---|---|---|")
    for label in servers:
        d, s = results[(label, "direct")], results[(label, "routed")]
        print(f"| {label} | closed loop, {c} clients as fast as answered | "
              f"{s['p50'] - d['p50']:.1f} | {s['p99'] - d['p99']:.1f} | {s['failed']:.0f} |")  # fmt: skip
        d, s = results[(label, "paced direct")], results[(label, "paced routed")]
        print(f"| {label} | paced, {c} clients sending {args.rate:.0f} req/s in all "
              f"(direct p50 {d['p50']:.1f} / p99 {d['p99']:.1f} ms) | {s['p50'] - d['p50']:.1f} | "
              f"{s['p99'] - d['p99']:.1f} | {s['failed'] + d['failed']:.0f} |")  # fmt: skip
    print("\ngoals: route only >= 1,000 req/s; routed added p99 <= 10 ms; 0 failures")


if __name__ == "__main__":
    main()
