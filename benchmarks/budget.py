"""Budgets: calibrate ``alpha`` to a cost target on training data, check it on the test split
(docs/benchmarks.md, section "Budgets").

For each data set a router (64 clusters) is fitted on the training split; ``Router.calibrate``
(5-fold cross-validation on the training split only) chooses ``alpha`` for three cost targets,
placed at 10 %, 30 % and 60 % of the way from the cheapest cross-validated setting (alpha = 0) to
quality-only routing (alpha = 1). The router with that alpha is then measured on the shared test
split: achieved average cost per query against the target, and accuracy against the best single
model (best on training data).

    python benchmarks/budget.py [--datasets routerbench dcrouter] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

from avengers import Router
from avengers.embedding.embedders import resolve_embedder
from avengers.training.datasets import load_dcrouter, load_routerbench
from avengers.training.evaluation import evaluate

FRACTIONS = (0.1, 0.3, 0.6)
LOADERS = {"routerbench": load_routerbench, "dcrouter": lambda s: load_dcrouter(s, with_price=True)}


def run(name: str) -> list[dict[str, Any]]:
    emb = resolve_embedder(None)
    train, test = LOADERS[name]("train"), LOADERS[name]("test")
    X, Xt = emb.embed(train.queries), emb.embed(test.queries)
    router = Router(n_clusters=64, embedder=emb).fit(train, embeddings=X)
    t0 = time.perf_counter()
    probe = router.calibrate(train, target_cost=1e30, embeddings=X)
    lo = min(p.cost for p in probe.grid)
    hi = max(p.cost for p in probe.grid)
    rows = []
    for f in FRACTIONS:
        target = lo + f * (hi - lo)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = router.calibrate(train, target_cost=target, embeddings=X)
        ev = evaluate(router, test, embeddings=Xt)
        rows.append(
            {
                "dataset": name,
                "target": target,
                "alpha": res.alpha,
                "cv_cost": res.expected_cost,
                "cv_cost_se": res.cost_se,
                "cv_accuracy": res.expected_accuracy,
                "cv_accuracy_se": res.accuracy_se,
                "test_cost": ev.cost,
                "test_accuracy": ev.accuracy,
                "best_single_model": ev.best_single_model,
                "best_single": ev.best_single,
                "best_single_cost": ev.best_single_cost,
                "warned": bool(caught),
            }
        )
    print(f"{name}: {len(train)} train / {len(test)} test, {time.perf_counter() - t0:.0f} s")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| data | target cost | alpha | CV cost ± se | test cost | CV acc ± se | test acc "
        "| best single (test acc, cost) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['dataset']} | {r['target']:.4g} | {r['alpha']:g} "
            f"| {r['cv_cost']:.4g} ± {r['cv_cost_se']:.2g} | {r['test_cost']:.4g} "
            f"| {r['cv_accuracy']:.3f} ± {r['cv_accuracy_se']:.3f} | {r['test_accuracy']:.3f} "
            f"| {r['best_single_model']} ({r['best_single']:.3f}, {r['best_single_cost']:.4g}) |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["routerbench", "dcrouter"])
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = [r for name in args.datasets for r in run(name)]
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
