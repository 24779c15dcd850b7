"""Load benchmark of ``avengers serve`` (issue 8), loopback only and bounded.

An instant local OpenAI-compatible upstream serves every candidate of the shipped pretrained
router; ``avengers serve`` runs in its own process in front of it (profile ``avengers-fast``: one
sample, so the figures show the server's own overhead: parsing, embedding the query, routing,
proxying). At 1, 16 and 64 concurrent clients the same number of requests go first straight to
the upstream, then through the server; the script prints requests/s, p50/p99 latency of both,
the added latency, and failed or lost requests (the goal is zero).

    .venv/bin/python benchmarks/serve_load.py [--quick]
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

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from avengers.training.bundled import load_pretrained


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drive(
    url: str, model: str, n: int, conc: int, tag: str
) -> tuple[float, list[float], int]:
    lat: list[float] = []
    failed = 0
    sem = asyncio.Semaphore(conc)
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            nonlocal failed
            body = {"model": model, "messages": [{"role": "user", "content":
                    f"Question {i} ({tag}): what is {i} plus {i * 7}?"}]}  # fmt: skip
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post(f"{url}/chat/completions", json=body)
                    ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                except httpx.HTTPError:
                    ok = False
                lat.append(time.perf_counter() - t0)
                failed += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    return wall, lat, failed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    router = load_pretrained()
    models = list(router.models_)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # the upstream runs in its own process, so it does not share a GIL with the load generator
    up_port = free_port()
    fake = Path(__file__).resolve().parents[1] / "tests" / "fake_openai_server.py"
    upstream = subprocess.Popen(
        [sys.executable, str(fake), "--port", str(up_port), "--models", ",".join(models)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    up_url = f"http://127.0.0.1:{up_port}/v1"
    tmp = Path(tempfile.mkdtemp())
    (tmp / "e.json").write_text(json.dumps({"endpoints": {
        m: {"base_url": up_url, "max_concurrency": 64, "max_retries": 0} for m in models}}))  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "avengers", "serve", "-e", str(tmp / "e.json"), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        asyncio.run(drive(url, "avengers-fast", 20, 1, "warm-up"))
        asyncio.run(drive(url, "avengers-fast", 100, 16, "warm-up"))
        sizes = {1: 100, 16: 400, 64: 800} if not args.quick else {1: 20, 16: 100, 64: 200}
        print("| clients | requests | path | req/s | p50 (ms) | p99 (ms) | failed |")
        print("|---|---|---|---|---|---|---|")
        added = []
        tag = str(time.time_ns())
        for conc, n in sizes.items():
            rows = {}
            for name, u, model in (("upstream directly", up_url, models[0]),
                                   ("through avengers serve", url, "avengers-fast")):  # fmt: skip
                wall, lat, failed = asyncio.run(drive(u, model, n, conc, f"{tag}-{conc}"))
                a = np.array(lat) * 1000
                rows[name] = (np.percentile(a, 50), np.percentile(a, 99))
                lost = n - len(lat)
                print(f"| {conc} | {n} | {name} | {n / wall:.0f} | {rows[name][0]:.1f} | "
                      f"{rows[name][1]:.1f} | {failed + lost} |")  # fmt: skip
            d, s = rows["upstream directly"], rows["through avengers serve"]
            added.append((conc, s[0] - d[0], s[1] - d[1]))
        print("\n| clients | added p50 (ms) | added p99 (ms) |\n|---|---|---|")
        for conc, p50, p99 in added:
            print(f"| {conc} | {p50:.1f} | {p99:.1f} |")
    finally:
        proc.terminate()
        proc.wait(30)
        upstream.terminate()
        upstream.wait(30)


if __name__ == "__main__":
    main()
