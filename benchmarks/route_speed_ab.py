"""One-query routing speed of two versions of the package, side by side in one run.

Each round runs one worker process per version, alternating (A, B, A, B, ...), so both see the
same machine load; each worker fits the default ``Router()`` (K=64 soft clusters with the success
classifiers) with the static embedder on the bundled dcrouter train split and times, per call:
routing one embedded query (``route_embeddings`` of one row, what ``embed_speed.py`` calls
"routing after embedding"), embed + route of one query (``route``), and ``route_batch`` of the
305 test queries. The table gives the median over rounds of each worker's median.

    .venv/bin/python benchmarks/route_speed_ab.py OLD_SHARED NEW_SHARED [--rounds 5] [--n 2000]

``OLD_SHARED`` and ``NEW_SHARED`` are folders holding an ``avengers`` package (for example
``/work/main/shared`` and ``shared``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, statistics, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import avengers
from avengers import Router
from avengers.training.datasets import load_dcrouter_dir
from avengers.embedding.static import StaticEmbedder

n = int(sys.argv[1])
d = Path(avengers.__file__).parent / "data" / "dcrouter"
train, test = load_dcrouter_dir(d, "train"), load_dcrouter_dir(d, "test")
emb = StaticEmbedder()
router = Router(embedder=emb).fit(train, embeddings=emb.embed(list(train.queries)))
queries = list(test.queries)
Y = emb.embed(queries)

def med(fn, reps):
    out = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return statistics.median(out)

med(lambda i: router.route_embeddings(Y[i % len(Y) : i % len(Y) + 1]), 200)  # warm up
one = med(lambda i: router.route_embeddings(Y[i % len(Y) : i % len(Y) + 1]), n)
both = med(lambda i: router.route(queries[i % len(queries)]), n // 2)
batch = med(lambda i: router.route_batch(queries), 20)
print(json.dumps({"where": avengers.__file__, "one": one, "both": both, "batch": batch}))
"""


def run(shared: str, n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(shared), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(n)], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000, help="one-query calls timed per worker")
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for label in ("old", "new"):
            runs[label].append(run(getattr(args, label), args.n))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}; {args.rounds} rounds")
    print(f"old: {runs['old'][0]['where']}\nnew: {runs['new'][0]['where']}\n")
    print("| measure (median of per-round medians) | old | new | new / old |")
    print("|---|---|---|---|")
    for key, name in (
        ("one", "route one embedded query (route_embeddings, 1 row)"),
        ("both", "embed + route one query (route)"),
        ("batch", "route_batch of 305 queries"),
    ):
        old = statistics.median(r[key] for r in runs["old"])
        new = statistics.median(r[key] for r in runs["new"])
        print(f"| {name} | {old * 1e3:.3f} ms | {new * 1e3:.3f} ms | {new / old:.2f} |")


if __name__ == "__main__":
    main()
