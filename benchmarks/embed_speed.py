"""Embedding and routing speed: MiniLM (sentence-transformers, torch) versus the static embedder
(model2vec, numpy), side by side on the bundled dcrouter data.

For each embedder: batched embedding throughput, single-query embedding latency (median, p99),
single-query embed + route latency with the default ``Router()`` (hybrid: K=64 soft clusters
and the success classifiers) fitted on the bundled train split,
and route decisions per second (one query at a time, and in one batch). Goals for the static
embedder: embed + route of one query within 1 ms, and at least 2,000 decisions per second.

    .venv/bin/python benchmarks/embed_speed.py [--single 300] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--single", type=int, default=300, help="single queries timed per embedder")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for MiniLM")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()[0]

    import avengers
    from avengers import Router
    from avengers.embedding.embedders import CachedEmbedder, SentenceTransformerEmbedder
    from avengers.embedding.static import StaticEmbedder
    from avengers.training.datasets import load_dcrouter_dir

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    d = Path(avengers.__file__).parent / "data" / "dcrouter"
    train, test = load_dcrouter_dir(d, "train"), load_dcrouter_dir(d, "test")
    queries = list(test.queries)
    singles = [
        queries[i % len(queries)] + ("" if i < len(queries) else f" ({i})")
        for i in range(args.single)
    ]

    minilm = SentenceTransformerEmbedder()
    static = StaticEmbedder()
    results: dict[str, dict[str, str]] = {}
    for label, emb in (("MiniLM (torch)", minilm), ("static pca256 (numpy)", static)):
        emb.embed(queries[:8])  # load and warm up
        # batched throughput over the test queries
        reps = 3 if emb is minilm else 30
        t = time.perf_counter()
        for _ in range(reps):
            emb.embed(queries)
        batched = reps * len(queries) / (time.perf_counter() - t)
        lat = timed(lambda i, emb=emb: emb.embed([singles[i]]), len(singles))
        # a router fitted on the train split with this embedder (MiniLM vectors cached on disk)
        fit_emb = CachedEmbedder(minilm) if emb is minilm else emb
        X = fit_emb.embed(list(train.queries))
        router = Router(embedder=emb).fit(train, embeddings=X)
        router.route(queries[0])
        both = timed(lambda i, r=router: r.route(singles[i]), len(singles))
        Y = emb.embed(queries)
        route_only = timed(
            lambda i, r=router, Y=Y: r.route_embeddings(Y[i % len(Y) : i % len(Y) + 1]),
            len(singles),
        )
        t = time.perf_counter()
        for _ in range(reps):
            router.route_batch(queries)
        batch_dps = reps * len(queries) / (time.perf_counter() - t)
        results[label] = {
            "dimension": str(emb.dimension),
            "batched embedding (305 test queries per call)": f"{batched:,.0f} queries/s",
            "single query embed, median": f"{statistics.median(lat) * 1e3:.3f} ms",
            "single query embed, p99": f"{percentile(lat, 99) * 1e3:.3f} ms",
            "routing after embedding, median": f"{statistics.median(route_only) * 1e3:.3f} ms",
            "single query embed + route, median": f"{statistics.median(both) * 1e3:.3f} ms",
            "single query embed + route, p99": f"{percentile(both, 99) * 1e3:.3f} ms",
            "decisions/s, one query at a time": f"{len(both) / sum(both):,.0f}",
            "decisions/s, batched (route_batch of 305)": f"{batch_dps:,.0f}",
        }

    labels = list(results)
    print(
        f"default Router() on the bundled dcrouter train split; {len(singles)} single queries; "
        f"CPU cores: {os.cpu_count()}; load average (1 min) at start: {load:.1f} "
        "(other processes inflate every figure)\n"
    )
    print("| measure | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for key in results[labels[0]]:
        print(f"| {key} | " + " | ".join(results[lab][key] for lab in labels) + " |")


if __name__ == "__main__":
    main()
