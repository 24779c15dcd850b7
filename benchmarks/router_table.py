"""Router quality and speed on the public outcome data beside the project (../shared/data).

Prints markdown tables: for each test set, the paper's plain router for K in {4..128}, kNN
scoring, our default (soft routing over 5 clusters, shrinkage 10), a logistic-regression competitor (one success classifier per
model on the same embeddings), best single model, oracle and random; then fit time, batch routing
throughput and single-query latency split into embedding and routing.

    .venv/bin/python benchmarks/router_table.py [--data-dir ../shared/data] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from avengers import Router, evaluate
from avengers.embedding.embedders import resolve_embedder
from avengers.training.data import OutcomeData
from avengers.training.datasets import load_dcrouter, load_routerdc

warnings.filterwarnings("ignore")


def lr_accuracy(train: OutcomeData, test: OutcomeData, X: np.ndarray, Y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    S = np.nan_to_num(train.scores)
    P = np.zeros((len(test), len(train.models)))
    for j in range(len(train.models)):
        y = (S[:, j] >= 0.5).astype(int)
        if y.min() == y.max():
            P[:, j] = y[0]
            continue
        P[:, j] = LogisticRegression(max_iter=1000).fit(X, y).predict_proba(Y)[:, 1]
    T = np.nan_to_num(test.select_models(train.models).scores)
    return float(T[np.arange(len(test)), P.argmax(1)].mean())


def macro(e: Any) -> float | None:
    if not e.per_task or len(e.per_task) < 2:
        return None
    return float(np.mean([t["accuracy"] for t in e.per_task.values()]))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--quick", action="store_true", help="dcrouter only")
    args = ap.parse_args()
    emb = resolve_embedder(None)

    sets: dict[str, tuple[Callable[[], OutcomeData], Callable[[], OutcomeData]]] = {
        "dcrouter test": (
            lambda: load_dcrouter("train", args.data_dir),
            lambda: load_dcrouter("test", args.data_dir),
        ),
    }
    if not args.quick:
        sets["routerdc in-dist"] = (
            lambda: load_routerdc("train", args.data_dir),
            lambda: load_routerdc("test", args.data_dir),
        )
        sets["routerdc OOD"] = (
            lambda: load_routerdc("train", args.data_dir),
            lambda: load_routerdc("ood", args.data_dir),
        )

    paper = Router.paper().get_params()
    configs: list[tuple[str, dict[str, Any]]] = [
        (f"paper K={k}", {**paper, "n_clusters": k}) for k in (4, 8, 16, 32, 64, 128)
    ]
    configs += [(f"ours K={k}", {"n_clusters": k}) for k in (16, 32, 64, 128)]
    configs += [("kNN (k=128)", {**paper, "scoring": "knn", "n_neighbors": 128})]

    print(
        "## Routing quality (accuracy = mean test score of the chosen model; gap = share of best-single-to-oracle gap closed)\n"
    )
    for name, (ltr, lte) in sets.items():
        train, test = ltr(), lte()
        X, Y = emb.embed(train.queries), emb.embed(test.queries)
        print(
            f"### {name}: {len(train)} train / {len(test)} test queries, {len(train.models)} models\n"
        )
        print("| router | accuracy | gap closed | macro acc |")
        print("|---|---|---|---|")
        first = None
        for label, kw in configs:
            r = Router(**kw).set_embedder(emb)
            r.fit(train, embeddings=X)
            e = evaluate(r, test, embeddings=Y)
            first = first or e
            m = macro(e)
            print(
                f"| {label} | {e.accuracy:.4f} | {e.gap_closed:+.1%} | {'' if m is None else f'{m:.4f}'} |"
            )
        assert first is not None
        lr = lr_accuracy(train, test, X, Y)
        gap = first.oracle - first.best_single
        print(
            f"| logistic regression per model | {lr:.4f} | {(lr - first.best_single) / gap:+.1%} | |"
        )
        print(f"| best single ({first.best_single_model}) | {first.best_single:.4f} | 0 | |")
        print(f"| oracle | {first.oracle:.4f} | 100% | |")
        print(f"| random | {first.random:.4f} | | |\n")

    # ------------------------------------------------------------------ speed
    train, test = load_dcrouter("train", args.data_dir), load_dcrouter("test", args.data_dir)
    X = emb.embed(train.queries)
    print("## Speed (dcrouter, MiniLM on CPU)\n")
    print("| measure | value |")
    print("|---|---|")
    for label, kw in (("paper K=64", Router.paper().get_params()), ("ours K=64 (default)", {})):
        t = time.perf_counter()
        r = Router(**kw).set_embedder(emb)
        r.fit(train, embeddings=X)
        print(f"| fit time, {label} (embeddings given) | {time.perf_counter() - t:.2f} s |")
    Y = emb.embed(test.queries)
    t = time.perf_counter()
    reps = 20
    for _ in range(reps):
        r.route_embeddings(Y)
    dt = (time.perf_counter() - t) / reps
    print(f"| batch routing after embedding ({len(Y)} queries) | {len(Y) / dt:,.0f} queries/s |")
    raw = resolve_embedder(None, cache=False)
    q = "Write a Python function that returns the sum of the squares of a list of integers."
    raw.embed([q])  # warm up the model
    n = 30
    t = time.perf_counter()
    for i in range(n):
        y = raw.embed([f"{q} ({i})"])
    t_emb = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(200):
        r.route_embeddings(y)
    t_route = (time.perf_counter() - t) / 200
    t = time.perf_counter()
    for _ in range(200):
        r.predict(y)
    t_pred = (time.perf_counter() - t) / 200
    print(f"| single query: embedding (MiniLM, uncached) | {t_emb * 1e3:.1f} ms |")
    print(f"| single query: routing after embedding (decision object) | {t_route * 1e6:.0f} µs |")
    print(
        f"| single query: routing after embedding (predict, index only) | {t_pred * 1e6:.0f} µs |"
    )
    texts = [f"{q} ({i})" for i in range(256)]
    t = time.perf_counter()
    raw.embed(texts)
    print(
        f"| batch embedding, 256 short queries | {256 / (time.perf_counter() - t):,.0f} queries/s |"
    )


if __name__ == "__main__":
    main()
