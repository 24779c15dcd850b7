"""Issue 15 (a) with a learning phase and a refit, over many seeds.

Per seed (which 10 % of the training queries start the router, and the stream order): a router
fitted on that 10 % makes one pass over the other 90 % with top-two exploration, learning from
bandit feedback (only the chosen model's recorded outcome is revealed; ``benchmarks/online.py``'s
``bandit_pass``). Then the explicit offline step: a new ``fit`` on the outcome log, with the
unrevealed outcomes left out (``plain``) or filled by ``Router.impute`` (``query``: the online
router's expected score, the log's task labels as hints; ``task``: each model's mean score on the
row's task in the initial 10 %). Accuracy is the mean recorded test score of the greedy pick on
the shared test split; "gap closed" is the mean gain over the 10 % router divided by the mean gap
between it and the router fitted offline on 100 % with full information, with a bootstrap
standard error over seeds.

    PYTHONPATH=shared python benchmarks/online_refit.py --dataset routerdc --seeds 0-47 \\
        --json runs/refit_routerdc.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from avengers import Router
from avengers.embedding.embedders import resolve_embedder
from avengers.training.datasets import load_dcrouter, load_routerdc
from online import SETTINGS, accuracy, bandit_pass, logged_outcomes, seed_start

FILLS = ("plain", "query", "task")


def seeds_arg(text: str) -> list[int]:
    """``0-11`` or ``0,3,5``."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def one_seed(train: Any, test: Any, X: np.ndarray, Xt: np.ndarray, seed: int, explore: float,
             rule: str, fills: tuple[str, ...], shares: tuple[float, ...] = ()) -> dict[str, Any]:  # fmt: skip
    first, rest, r10, log = seed_start(train, X, seed)
    row: dict[str, Any] = {"seed": seed, "acc_10": accuracy(r10, Xt, test)}
    order = np.concatenate([first, rest])
    for share in shares:  # the yardstick: full information on a larger share of the same order
        idx = order[: int(len(train) * share)]
        r = Router(**SETTINGS).fit(train.subset(idx), embeddings=X[idx])
        row[f"acc_share_{round(share * 100)}"] = accuracy(r, Xt, test)
    online = copy.deepcopy(r10).set_params(explore=explore, explore_rule=rule)
    stats: dict[str, float] = {}
    bandit_pass(online, X, train, rest, log=log, stats=stats)
    row["acc_online"] = accuracy(online, Xt, test)
    row["stream_reward"] = stats["stream_reward"]
    data = logged_outcomes(train, log)
    for fill in fills:
        table = data if fill == "plain" else online.impute(data, embeddings=X, by=fill)
        refit = Router(**SETTINGS).fit(table, embeddings=X)
        row[f"acc_refit_{fill}"] = accuracy(refit, Xt, test)
    return row


def gap_closed(rows: list[dict[str, Any]], key: str, acc_full: float) -> tuple[float, float]:
    """The mean gain over the mean gap, and its bootstrap standard error over seeds."""
    gain = np.array([r[key] - r["acc_10"] for r in rows])
    gap = np.array([acc_full - r["acc_10"] for r in rows])
    rng = np.random.default_rng(0)
    boot = [
        gain[i].mean() / gap[i].mean()
        for i in (rng.integers(0, len(rows), len(rows)) for _ in range(2000))
    ]
    return float(gain.mean() / gap.mean()), float(np.std(boot))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=["routerdc", "dcrouter"], default="routerdc")
    ap.add_argument("--seeds", type=seeds_arg, default=list(range(12)))
    ap.add_argument("--explore", type=float, default=1.0)
    ap.add_argument("--explore-rule", default="top-two")
    ap.add_argument("--fills", nargs="+", choices=FILLS, default=list(FILLS))
    ap.add_argument("--shares", type=float, nargs="*", default=[],
                    help="also fit routers with every model's outcome on these shares of the "
                    "same seed's order (e.g. 0.4 0.6 0.8 0.9): how much full information the "
                    "refit is worth")  # fmt: skip
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    loader = {"routerdc": load_routerdc, "dcrouter": load_dcrouter}[args.dataset]
    train, test = loader("train"), loader("test")
    test = test.select_models(train.models)
    emb = resolve_embedder(None)
    X, Xt = emb.embed(train.queries), emb.embed(test.queries)
    acc_full = accuracy(Router(**SETTINGS).fit(train, embeddings=X), Xt, test)
    rows = []
    for seed in args.seeds:
        row = one_seed(train, test, X, Xt, seed, args.explore, args.explore_rule,
                       tuple(args.fills), tuple(args.shares))  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = ["acc_online", *(f"acc_refit_{f}" for f in args.fills)]
    keys += [f"acc_share_{round(s * 100)}" for s in args.shares]
    summary = {"dataset": args.dataset, "seeds": args.seeds, "acc_full": acc_full,
               "acc_10": float(np.mean([r["acc_10"] for r in rows])),
               **{k: float(np.mean([r[k] for r in rows])) for k in keys},
               **{f"gap_closed_{k[4:]}": gap_closed(rows, k, acc_full) for k in keys}}  # fmt: skip
    print(json.dumps(summary), flush=True)
    for k in keys:
        g, se = summary[f"gap_closed_{k[4:]}"]
        print(f"{args.dataset} {k[4:]:>14}: {summary[k]:.4f}, gap closed {g:.0%} ± {se:.0%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    main()
