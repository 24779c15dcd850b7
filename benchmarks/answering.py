"""Answering-layer figures (issue 4), measured side by side in one run.

1. Wall time of n concurrent samples as a ratio of one call, against a local OpenAI-compatible
   server whose every call takes a fixed time (a stand-in for a model), endpoint concurrency 8.
2. The router's added latency per answered query: ``Answerer.aanswer`` (direct strategy: embed,
   route, one call) against the same single call made straight to the endpoint.
3. Adaptive sampling, by simulation on the repeated-sample outcomes of routerdc-7models (gsm8k,
   humaneval, mbpp, javascript: each score is the fraction of 10 sampled answers that were
   right). The model the router picks answers 10 times; each answer is right with that fraction
   as probability, a wrong answer is one of W distinct wrong answers (W = 3, uniform; an
   assumption -- the data records only right/wrong). Compared: full 10-sample vote, adaptive
   stopping (stop once the leader cannot be overtaken; never changes the winner), and stopping
   once the first k answers agree.

    .venv/bin/python benchmarks/answering.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from avengers import Answerer, Endpoint, Router
from avengers.training.bundled import load_bundled
from avengers.transport.backends import OpenAIBackend
from fake_openai_server import FakeModel, FakeOpenAIServer


async def concurrency_table(delay: float, reps: int) -> list[tuple[int, float, float]]:
    server = FakeOpenAIServer({"m": FakeModel(answers=["42"], delay=delay)}).start()
    backend = OpenAIBackend({"m": Endpoint("m", server.base_url, max_concurrency=8)})
    msgs = [{"role": "user", "content": "What is 6 times 7?"}]
    await backend.complete("m", msgs, temperature=0.7)  # warm the connection pool
    rows = []
    try:
        for n in (1, 2, 4, 8, 16):
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                await asyncio.gather(
                    *(backend.complete("m", msgs, temperature=0.7) for _ in range(n))
                )
                times.append(time.perf_counter() - t0)
            rows.append((n, statistics.median(times), 0.0))
        one = rows[0][1]
        rows = [(n, t, t / one) for n, t, _ in rows]
    finally:
        await backend.aclose()
        server.stop()
    return rows


async def added_latency(router: Router, reps: int) -> tuple[float, float, float]:
    server = FakeOpenAIServer({m: FakeModel(answers=["42"]) for m in router.models_}).start()
    eps = {m: Endpoint(m, server.base_url) for m in router.models_}
    backend = OpenAIBackend(eps)
    answerer = Answerer(router, backend, strategy="direct")
    # fresh texts each run: the embedder's disk cache must not hide the embedding cost
    tag = time.time_ns()
    queries = [f"What is {i} times {i + 3}? Explain briefly. (run {tag})" for i in range(reps)]
    msgs = [{"role": "user", "content": q} for q in queries]
    await answerer.aanswer(queries[0])  # load the embedder, open connections
    await backend.complete(router.models_[0], [msgs[0]], temperature=0.7)
    direct, routed, routing = [], [], []
    try:
        for q, m in zip(queries, msgs, strict=True):
            t0 = time.perf_counter()
            await backend.complete(router.models_[0], [m], temperature=0.7)
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = await answerer.aanswer(q)
            routed.append(time.perf_counter() - t0)
            routing.append(res.routing_latency)
    finally:
        await backend.aclose()
        server.stop()
    return statistics.median(direct), statistics.median(routed), statistics.median(routing)


def simulate_adaptive(p: np.ndarray, rng: np.random.Generator, n: int = 10, wrong: int = 3,
                      trials: int = 20) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Accuracy and mean samples drawn for: full vote, adaptive margin, agreement-k stops."""
    from avengers.answering.voting import Ballot, counts_margin, vote

    out: dict[str, list[tuple[float, int]]] = {
        "full": [],
        "adaptive": [],
        "agree3": [],
        "agree2": [],
    }
    for pi in p:
        for _ in range(trials):
            right = rng.random(n) < pi
            answers = np.where(right, "R", rng.integers(0, wrong, n).astype(str))
            seq = [str(a) for a in answers]
            full = vote([Ballot(a, 0, i) for i, a in enumerate(seq)]).answer
            out["full"].append((full == "R", n))
            counts: dict[str, int] = {}
            used = n
            for i, a in enumerate(seq):
                counts[a] = counts.get(a, 0) + 1
                if counts_margin(counts, n - i - 1):
                    used = i + 1
                    break
            ad = vote([Ballot(a, 0, i) for i, a in enumerate(seq[:used])]).answer
            out["adaptive"].append((ad == "R", used))
            for k, key in ((3, "agree3"), (2, "agree2")):
                if len(set(seq[:k])) == 1:
                    out[key].append((seq[0] == "R", k))
                else:
                    # fall back to the adaptive rule for the rest
                    out[key].append((ad == "R", max(used, k)))
    return {
        k: (float(np.mean([a for a, _ in v])), float(np.mean([u for _, u in v])))
        for k, v in out.items()
    }


def adaptive_table(data_dir: str | None, trials: int) -> tuple[list[str], int]:
    from avengers.training.datasets import load_routerdc

    train = load_routerdc("train", data_dir)
    router = Router().fit(train)
    rng = np.random.default_rng(0)
    lines = [
        "| task | questions | strategy | accuracy | samples drawn (of 10) | saved |",
        "|---|---|---|---|---|---|",
    ]
    total = 0
    for stem, label in (("gsm8k-test", "gsm8k"), ("humaneval_test", "humaneval"),
                        ("mbpp", "mbpp (OOD)"), ("javascript", "javascript (OOD)")):  # fmt: skip
        test = load_routerdc(stem, data_dir).select_models(router.models_)
        pick = router.predict(router.embed(test.queries))
        p = np.nan_to_num(test.scores[np.arange(len(test)), pick])
        total += len(test)
        res = simulate_adaptive(p, rng, trials=trials)
        one = float(p.mean())
        lines.append(f"| {label} | {len(test)} | one sample | {one:.3f} | 1 | |")
        for key, name in (("full", "vote over 10"), ("adaptive", "adaptive (leader safe)"),
                          ("agree3", "stop if first 3 agree"), ("agree2", "stop if first 2 agree")):  # fmt: skip
            acc, used = res[key]
            lines.append(
                f"| {label} | {len(test)} | {name} | {acc:.3f} | {used:.2f} | {1 - used / 10:.0%} |"
            )
    return lines, total


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    reps = 3 if args.quick else 7

    print(
        "## n concurrent samples vs one call (local server, 200 ms per call, endpoint concurrency 8)\n"
    )
    print("| samples | wall time (s) | ratio to one call |\n|---|---|---|")
    for n, t, r in await concurrency_table(0.2, reps):
        print(f"| {n} | {t:.3f} | {r:.2f} |")

    router = Router(n_clusters=8).fit(load_bundled("train"))
    d, r, ro = await added_latency(router, 20 if args.quick else 60)
    print(
        "\n## added latency of routing per answered query (direct strategy, instant local server)\n"
    )
    print("| call | median latency (ms) |\n|---|---|")
    print(f"| endpoint called directly | {d * 1000:.1f} |")
    print(f"| through Answerer (embed + route + call) | {r * 1000:.1f} |")
    print(f"| of which embedding (MiniLM, CPU) + routing | {ro * 1000:.1f} |")
    print(f"| added by the router | {(r - d) * 1000:.1f} |")

    print("\n## adaptive sampling, simulated on routerdc-7models repeated-sample outcomes\n")
    lines, _ = adaptive_table(args.data_dir, 5 if args.quick else 20)
    print("\n".join(lines))
    print("\n(simulation: each of 10 samples is right with the routed model's measured fraction; "
          "wrong answers are one of 3 distinct values)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
