"""Online learning with bandit feedback on the shared research data (docs/benchmarks.md, section
"Online learning").

Recorded outcomes are replayed as bandit feedback: for each training query the router (with
exploration) picks a model and only that model's recorded outcome is revealed and fed back with
``Router.update``. Accuracy is measured on the test split (the chosen model's recorded score).

(a) warm start: a router fitted on 10 % of the training queries, one pass over the other 90 %;
    share of the accuracy gap closed to the full-information router fitted on 100 %.
(b) cold start: the strongest model is absent from the initial 10 % and added (``add_model``)
    when the stream starts; its routed share and the accuracy after the pass, vs full information.
(c) drift (routerdc, which has tasks): half-way through a pass, the model the router sends most
    of one task to starts scoring 0 there; how many of that task's queries until its share of
    the task falls below 10 %, with forgetting (``half_life``) and without.

    python benchmarks/online.py [--datasets dcrouter routerdc] [--plot docs/img/online.png]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from avengers import Router
from avengers.data import OutcomeData
from avengers.datasets import load_dcrouter, load_routerdc
from avengers.embedders import resolve_embedder

BATCH = 50
SETTINGS: dict[str, Any] = {"n_clusters": 64}


def accuracy(router: Router, X: np.ndarray, data: OutcomeData) -> float:
    """Mean recorded score of the model the router picks (greedy) on each test query."""
    cols = [data.models.index(m) for m in router.models_]
    pick = np.array(cols)[router.predict(X)]
    return float(np.nan_to_num(data.scores[np.arange(len(X)), pick]).mean())


def share_of(router: Router, X: np.ndarray, model: str) -> float:
    return float(np.mean(np.array(router.models_)[router.predict(X)] == model))


def bandit_pass(
    router: Router,
    X: np.ndarray,
    data: OutcomeData,
    order: np.ndarray,
    *,
    eval_every: int = 0,
    Xt: np.ndarray | None = None,
    test: OutcomeData | None = None,
    reveal: Any = None,
) -> list[tuple[int, float]]:
    """Stream ``order`` in batches: route (with exploration), reveal only the chosen model's
    recorded outcome, update. Returns (queries seen, test accuracy) checkpoints."""
    curve: list[tuple[int, float]] = []
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        ds = router.route_embeddings(X[idx])
        models = [d.model for d in ds]
        cols = [data.models.index(m) for m in models]
        scores = data.scores[idx, cols]
        if reveal is not None:
            scores = reveal(start, idx, models, scores)
        ok = ~np.isnan(scores)
        if ok.any():
            router.update(
                models=[m for m, k in zip(models, ok, strict=True) if k],
                scores=scores[ok],
                embeddings=X[idx][ok],
            )
        seen = start + len(idx)
        if (
            eval_every
            and Xt is not None
            and test is not None
            and (seen // eval_every != (seen - len(idx)) // eval_every or seen == len(order))
        ):
            curve.append((seen, accuracy(router, Xt, test)))
    return curve


def warm_and_cold(
    name: str, train: OutcomeData, test: OutcomeData, X, Xt, explore: float, seed: int = 0
):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(train))
    n10 = len(train) // 10
    first, rest = perm[:n10], perm[n10:]
    full = Router(**SETTINGS).fit(train, embeddings=X)
    acc_full = accuracy(full, Xt, test)
    r10 = Router(**SETTINGS).fit(train.subset(first), embeddings=X[first])
    acc10 = accuracy(r10, Xt, test)
    online = Router(**SETTINGS, explore=explore).fit(train.subset(first), embeddings=X[first])
    curve = bandit_pass(online, X, train, rest, eval_every=len(rest) // 10, Xt=Xt, test=test)
    acc_on = curve[-1][1]
    gap = (acc_on - acc10) / (acc_full - acc10) if acc_full != acc10 else float("nan")
    warm = {"dataset": name, "acc_10": acc10, "acc_online": acc_on, "acc_full": acc_full,
            "gap_closed": gap, "curve": curve}  # fmt: skip

    best = train.models[int(np.nanmean(train.scores, axis=0).argmax())]
    others = [m for m in train.models if m != best]
    cold = Router(**SETTINGS, explore=explore).fit(
        train.subset(first).select_models(others), embeddings=X[first]
    )
    cold.add_model(best)
    ccurve = bandit_pass(cold, X, train, rest, eval_every=len(rest) // 10, Xt=Xt, test=test)
    cold_res = {"dataset": name, "model": best, "share_online": share_of(cold, Xt, best),
                "share_full": share_of(full, Xt, best), "acc_online": ccurve[-1][1],
                "acc_full": acc_full, "curve": ccurve}  # fmt: skip
    return warm, cold_res


def drift(train: OutcomeData, X: np.ndarray, explore: float, half_life: float | None):
    """Returns (task, model, task queries after the drift until the model's share of the task
    stays below 10 % over a window, or None if never)."""
    assert train.tasks is not None
    tasks = np.array(train.tasks)
    base = Router(**SETTINGS).fit(train, embeddings=X)
    picks = np.array(base.models_)[base.predict(X)]
    # the task most concentrated on one model
    best_task, best_model, best_share = "", "", 0.0
    for t in sorted(set(train.tasks)):
        vals, counts = np.unique(picks[tasks == t], return_counts=True)
        if counts.max() / counts.sum() > best_share:
            best_task, best_model = t, str(vals[counts.argmax()])
            best_share = counts.max() / counts.sum()
    router = Router(**SETTINGS, explore=explore, half_life=half_life).fit(train, embeddings=X)
    order = np.random.default_rng(1).permutation(len(train))
    order = np.concatenate([order, order])  # two passes: drift half-way, at the second pass
    half = len(order) // 2
    after: list[bool] = []  # per task query after the drift: routed to the drifted model?

    def reveal(start: int, idx: np.ndarray, models: list[str], scores: np.ndarray) -> np.ndarray:
        scores = scores.copy()
        for k, (i, m) in enumerate(zip(idx, models, strict=True)):
            if start + k >= half and tasks[i] == best_task:
                after.append(m == best_model)
                if m == best_model:
                    scores[k] = 0.0
        return scores

    bandit_pass(router, X, train, order, reveal=reveal)
    window = 50
    moved = None
    for n in range(window, len(after) + 1):
        if np.mean(after[n - window : n]) < 0.10 and all(
            np.mean(after[j - window : j]) < 0.10 for j in range(n, len(after) + 1, window)
        ):
            moved = n
            break
    return best_task, best_model, best_share, moved, float(np.mean(after[-window:])), len(after)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=["dcrouter", "routerdc"])
    ap.add_argument("--explore", type=float, default=0.1)
    ap.add_argument("--half-life", type=float, default=50.0)
    ap.add_argument("--plot", default="docs/img/online.png")
    ap.add_argument("--json", default=None)
    ap.add_argument("--seed", type=int, default=0, help="split of the 10 %% and stream order")
    ap.add_argument("--no-drift", action="store_true", help="skip the drift experiment (c)")
    args = ap.parse_args()
    emb = resolve_embedder(None)
    loaders = {"dcrouter": lambda s: load_dcrouter(s), "routerdc": lambda s: load_routerdc(s)}
    results: dict[str, Any] = {"warm": [], "cold": [], "drift": []}
    for name in args.datasets:
        train, test = loaders[name]("train"), loaders[name]("test")
        test = test.select_models(train.models)
        X, Xt = emb.embed(train.queries), emb.embed(test.queries)
        warm, cold = warm_and_cold(name, train, test, X, Xt, args.explore, args.seed)
        results["warm"].append(warm)
        results["cold"].append(cold)
        print(json.dumps({k: v for k, v in warm.items() if k != "curve"}))
        print(json.dumps({k: v for k, v in cold.items() if k != "curve"}))
        if train.tasks is not None and not args.no_drift:
            for hl in (args.half_life, None):
                task, model, share0, moved, last, n_after = drift(train, X, args.explore, hl)
                row = {"dataset": name, "half_life": hl, "task": task, "model": model,
                       "share_before": share0, "moved_after": moved, "share_at_end": last,
                       "task_queries_after_drift": n_after}  # fmt: skip
                results["drift"].append(row)
                print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(results["warm"]), figsize=(5 * len(results["warm"]), 3.5))
        for ax, w, c in zip(np.atleast_1d(axes), results["warm"], results["cold"], strict=True):
            xs, ys = zip(*w["curve"], strict=True)
            ax.plot(xs, ys, marker="o", label="warm start (10 %)")
            xs, ys = zip(*c["curve"], strict=True)
            ax.plot(xs, ys, marker="s", label=f"cold start ({c['model']} added)")
            ax.axhline(w["acc_full"], color="k", ls="--", label="full information")
            ax.axhline(w["acc_10"], color="grey", ls=":", label="10 % router")
            ax.set_title(f"{w['dataset']}: bandit feedback")
            ax.set_xlabel("stream queries")
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
