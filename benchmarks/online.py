"""Online learning with bandit feedback on the shared research data (docs/benchmarks.md, section
"Online learning").

Recorded outcomes are replayed as bandit feedback: for each training query the router (with
exploration) picks a model and only that model's recorded outcome is revealed and fed back with
``Router.update``. Accuracy is the mean recorded test score of the greedy pick on the test split.
Each experiment runs for several seeds (which 10 % start the router, and the stream order).

(a) warm start: a router fitted on 10 % of the training queries, one pass over the other 90 %
    (``--explore``, default 0.1; ``--explore-rule``); share of the accuracy gap to the router fitted offline on 100 %
    with full information that is closed (ratio of the mean gain to the mean gap over seeds).
    Also the ceiling: the same 10 % router updated with *every* model's outcome on the 90 %
    (same centroids, which ``update`` keeps; the success classifiers get its Laplace update).
(a'') the explicit offline step after that pass: a new ``fit`` on the pass's outcome log (the 10 %
    with every outcome, the 90 % with only the revealed one, NaN elsewhere), which re-clusters all
    queries; also with the unrevealed outcomes filled with the updated router's expected score,
    doubly robust (``--dr-cap``), and with other estimates (``--refit-variants``).
(b) cold start: the strongest model is absent from the initial 10 % and added (``add_model``)
    when the stream starts (``--cold-explore``, default 0.3); its routed share and the accuracy
    after the pass, vs the full-information router.
(c) drift (routerdc, which has tasks): the router fitted on all training data streams it twice;
    from the second pass on, the model holding most of one large task scores 0 there. Its share
    of the task's queries (last 50) after the drift, with forgetting (``half_life``) and without.

    python benchmarks/online.py [--datasets dcrouter routerdc] [--seeds 0 1 2]
                                [--plot docs/img/online.png] [--ipw-cap 10] [--json out.json]
                                [--no-cold] [--no-drift] [--dr-cap 10] [--refit-variants]
                                [--explore-rule top-two] [--curve 0.2 0.3 0.4 0.6]
    python benchmarks/online.py --from-json a.json b.json --plot docs/img/online.png
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import numpy as np
from avengers import Router
from avengers.embedding.embedders import resolve_embedder
from avengers.training.data import OutcomeData
from avengers.training.datasets import load_dcrouter, load_routerdc

BATCH = 50
SETTINGS: dict[str, Any] = {"n_clusters": 64}
REFIT_VARIANTS: dict[str, dict[str, Any]] = {}
"""Other router settings for the refit on the log (``--refit-variants``): a per-query estimate
(the success classifiers, the nearest neighbours) conditions on the embedding the picks depended
on, where a cluster mean does not."""
REFIT_VARIANT_SETTINGS: dict[str, dict[str, Any]] = {
    "classifier_0.5": {"classifier_weight": 0.5},
    "classifier_1": {"classifier_weight": 1.0},
    "knn": {"scoring": "knn"},
}


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
    stats: dict[str, float] | None = None,
    ipw_cap: float | None = None,
    log: np.ndarray | None = None,
    propensity: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """Stream ``order`` in batches: route (with exploration), reveal only the chosen model's
    recorded outcome, update. Returns (queries seen, test accuracy) checkpoints; ``stats`` (if
    given) receives the share of explored picks and the mean revealed score during the pass.
    ``ipw_cap``: weight each revealed outcome by the inverse of its pick probability
    (``Router.pick_probabilities``), capped at this value (None: unweighted). ``log`` (shaped like
    ``data.scores``, NaN-filled) receives every revealed outcome: the outcome log of the pass;
    ``propensity`` (one per training row) the chance the chosen model had of being picked."""
    curve: list[tuple[int, float]] = []
    explored = reward = 0.0
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        ds = router.route_embeddings(X[idx])
        models = [d.model for d in ds]
        explored += sum(d.explored for d in ds)
        cols = [data.models.index(m) for m in models]
        scores = data.scores[idx, cols]
        weights = np.ones(len(idx))
        if ipw_cap is not None or propensity is not None:
            chosen = [router.models_.index(m) for m in models]
            p = router.pick_probabilities(X[idx])[np.arange(len(idx)), chosen]
            if propensity is not None:
                propensity[idx] = p
            if ipw_cap is not None:
                weights = np.minimum(1.0 / np.maximum(p, 1e-9), ipw_cap)
        if reveal is not None:
            scores = reveal(start, idx, models, scores)
        ok = ~np.isnan(scores)
        if log is not None:
            log[idx[ok], np.array(cols)[ok]] = scores[ok]
        reward += float(scores[ok].sum())
        if ok.any():
            router.update(
                models=[m for m, k in zip(models, ok, strict=True) if k],
                scores=scores[ok],
                embeddings=X[idx][ok],
                weights=weights[ok],
            )
        seen = start + len(idx)
        if (
            eval_every
            and Xt is not None
            and test is not None
            and (seen // eval_every != (seen - len(idx)) // eval_every or seen == len(order))
        ):
            curve.append((seen, accuracy(router, Xt, test)))
    if stats is not None:
        stats["explored_share"] = explored / max(len(order), 1)
        stats["stream_reward"] = reward / max(len(order), 1)
    return curve


def seed_start(
    train: OutcomeData, X: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, Router, np.ndarray]:
    """A seed's start: which 10 % of the training rows start the router (``first``), the stream
    order of the rest, the router fitted on ``first``, and the outcome log (shaped like
    ``train.scores``, NaN where not revealed) holding ``first`` with full information."""
    perm = np.random.default_rng(seed).permutation(len(train))
    n10 = len(train) // 10
    first, rest = perm[:n10], perm[n10:]
    r10 = Router(**SETTINGS).fit(train.subset(first), embeddings=X[first])
    log = np.full(train.scores.shape, np.nan)
    log[first] = train.scores[first]
    return first, rest, r10, log


def warm_and_cold(
    name: str,
    train: OutcomeData,
    test: OutcomeData,
    X: np.ndarray,
    Xt: np.ndarray,
    explore: float,
    cold_explore: float,
    seed: int,
    full: Router,
    ipw_cap: float | None = None,
    cold_start: bool = True,
    dr_cap: float | None = None,
    explore_rule: str = "thompson",
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One seed of (a) and (b) (None without ``cold_start``): which 10 % starts the router, and
    the stream order."""
    first, rest, r10, log = seed_start(train, X, seed)
    acc_full = accuracy(full, Xt, test)
    acc10 = accuracy(r10, Xt, test)
    # the ceiling of online learning with the 10 % router's centroids (classifiers updated): the same
    # stream with full information (every model's outcome revealed)
    ceiling = copy.deepcopy(r10)
    ceiling.update(train.subset(rest), embeddings=X[rest])
    acc_ceiling = accuracy(ceiling, Xt, test)
    online = copy.deepcopy(r10).set_params(explore=explore, explore_rule=explore_rule)
    st: dict[str, float] = {}
    prop = np.ones(len(train)) if dr_cap is not None else None
    curve = bandit_pass(
        online,
        X,
        train,
        rest,
        eval_every=len(rest) // 10,
        Xt=Xt,
        test=test,
        stats=st,
        ipw_cap=ipw_cap,
        log=log,
        propensity=prop,
    )
    # (a''): the explicit offline step after the pass, a new fit on the logged outcomes (the 10 %
    # with every model's outcome, the 90 % with only the revealed one)
    refit = Router(**SETTINGS).fit(logged_outcomes(train, log), embeddings=X)
    st["acc_refit"] = accuracy(refit, Xt, test)
    # the same, with each outcome never revealed filled in by the bandit-updated router's expected
    # score for it (the direct method of off-policy learning)
    expected = online.estimate(X).performance[:, [online.models_.index(m) for m in train.models]]
    filled = np.where(np.isnan(log), expected, log)
    refit = Router(**SETTINGS).fit(logged_outcomes(train, filled), embeddings=X)
    st["acc_refit_filled"] = accuracy(refit, Xt, test)
    if train.tasks is not None:
        # the same with the library's Router.impute, which reads the log's task labels as hints:
        # each gap is filled from the cell (task, cluster) of the fully labelled initial rows
        hinted = online.impute(logged_outcomes(train, log), embeddings=X)
        refit = Router(**SETTINGS).fit(hinted, embeddings=X)
        st["acc_refit_filled_hint"] = accuracy(refit, Xt, test)
    if prop is not None and dr_cap is not None:
        # doubly robust: the expected score plus the revealed outcome's surprise weighted by the
        # inverse of its pick probability (capped); unbiased cell means where the picks are not
        w = np.minimum(1.0 / np.maximum(prop, 1e-9), dr_cap)[:, None]
        dr = np.where(np.isnan(log), expected, expected + (log - expected) * w)
        dr[first] = train.scores[first]
        refit = Router(**SETTINGS).fit(logged_outcomes(train, dr), embeddings=X)
        st["acc_refit_dr"] = accuracy(refit, Xt, test)
    for vname, extra in REFIT_VARIANTS.items():
        for tag, table in (("", log), ("_filled", filled)):
            refit = Router(**{**SETTINGS, **extra}).fit(logged_outcomes(train, table), embeddings=X)
            st[f"acc_refit_{vname}{tag}"] = accuracy(refit, Xt, test)
    warm = {"dataset": name, "seed": seed, "explore": explore, "explore_rule": explore_rule,
            "acc_10": acc10, "acc_online": curve[-1][1],
            "acc_ceiling": acc_ceiling, "acc_full": acc_full, **st, "curve": curve}  # fmt: skip

    if not cold_start:
        return warm, None
    best = train.models[int(np.nanmean(train.scores, axis=0).argmax())]
    others = [m for m in train.models if m != best]
    cold = Router(**SETTINGS, explore=cold_explore).fit(
        train.subset(first).select_models(others), embeddings=X[first]
    )
    cold.add_model(best)
    st = {}
    ccurve = bandit_pass(
        cold,
        X,
        train,
        rest,
        eval_every=len(rest) // 10,
        Xt=Xt,
        test=test,
        stats=st,
        ipw_cap=ipw_cap,
    )
    cold_res = {"dataset": name, "seed": seed, "model": best,
                "share_online": share_of(cold, Xt, best), "share_full": share_of(full, Xt, best),
                "acc_online": ccurve[-1][1], "acc_full": acc_full, **st,
                "curve": ccurve}  # fmt: skip
    return warm, cold_res


def full_information_curve(
    train: OutcomeData,
    test: OutcomeData,
    X: np.ndarray,
    Xt: np.ndarray,
    fractions: list[float],
    seeds: list[int],
    acc_full: float,
) -> list[dict[str, Any]]:
    """What (a) is measured against: routers fitted offline with *every* model's outcome on the
    first ``fraction`` of each seed's permutation (the 10 % router is the first 10 % of the same
    permutation). One row per fraction: mean accuracy over seeds and the share of the gap (to
    the 100 % router) it closes, as for the bandit pass."""
    perms = [np.random.default_rng(seed).permutation(len(train)) for seed in seeds]
    acc: dict[float, list[float]] = {}
    for f in sorted({0.1, *fractions}):
        acc[f] = []
        for perm in perms:
            idx = perm[: int(len(train) * f)]
            r = Router(**SETTINGS).fit(train.subset(idx), embeddings=X[idx])
            acc[f].append(accuracy(r, Xt, test))
    base = float(np.mean(acc[0.1]))
    gap = acc_full - base
    rows = []
    for f, a in acc.items():
        mean = float(np.mean(a))
        closed = (mean - base) / gap if gap else float("nan")
        rows.append({"fraction": f, "acc": mean, "acc_sd": float(np.std(a)), "gap_closed": closed})
    return rows


def logged_outcomes(train: OutcomeData, log: np.ndarray) -> OutcomeData:
    """The training table as a feedback log holds it: ``log``'s scores (NaN: never revealed),
    costs only where the outcome is known."""
    costs = None if train.costs is None else np.where(np.isnan(log), np.nan, train.costs)
    return OutcomeData(list(train.queries), list(train.models), log, costs, train.tasks, "log")


def gap_closed(rows: list[dict[str, Any]], key: str = "acc_online") -> float:
    """Share of the mean gap (full information minus 10 % router) closed on average: the ratio
    of mean gains over seeds (a per-seed ratio explodes when one seed's gap is a query or two)."""
    gain = float(np.mean([r[key] - r["acc_10"] for r in rows]))
    gap = float(np.mean([r["acc_full"] - r["acc_10"] for r in rows]))
    return gain / gap if gap else float("nan")


DRIFT_WINDOW = 50
DRIFT_SHARE = 0.10
DRIFT_WITHIN = 150
"""The stated number of (c): the drifted model's share of the task over the task queries
``DRIFT_WITHIN - DRIFT_WINDOW + 1 .. DRIFT_WITHIN`` after the drift must be below ``DRIFT_SHARE``
with forgetting and not without."""


def drift(
    train: OutcomeData,
    X: np.ndarray,
    explore: float,
    half_life: float | None,
    base: Router,
    ipw_cap: float | None = None,
) -> dict[str, Any]:
    """(c): the router is fitted on all of ``train`` and streams it twice with bandit feedback;
    from the second pass on, the model holding most of one large task (>= 10 % of the rows)
    scores 0 on that task. Returns the task, the model, its share of the task before, the task
    queries after the drift until its share over the last ``DRIFT_WINDOW`` of them is below
    ``DRIFT_SHARE`` (None: never), its share at ``DRIFT_WITHIN``, and the share trace."""
    assert train.tasks is not None
    tasks = np.array(train.tasks)
    picks = np.array(base.models_)[base.predict(X)]
    best_task, best_model, best_share = "", "", 0.0
    for t in sorted(set(train.tasks)):
        if (tasks == t).sum() < 0.1 * len(tasks):
            continue  # a small task is won back by a few zeros even without forgetting
        vals, counts = np.unique(picks[tasks == t], return_counts=True)
        if counts.max() / counts.sum() > best_share:
            best_task, best_model = t, str(vals[counts.argmax()])
            best_share = counts.max() / counts.sum()
    router = copy.deepcopy(base).set_params(explore=explore, half_life=half_life)
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

    bandit_pass(router, X, train, order, reveal=reveal, ipw_cap=ipw_cap)
    a = np.array(after, dtype=float)
    trace = [float(a[max(0, n - DRIFT_WINDOW) : n].mean()) for n in range(1, len(a) + 1)]
    moved = next((n for n in range(DRIFT_WINDOW, len(a) + 1) if trace[n - 1] < DRIFT_SHARE), None)
    within = trace[min(DRIFT_WITHIN, len(trace)) - 1] if trace else float("nan")
    return {"half_life": half_life, "task": best_task, "model": best_model,
            "share_before": float(best_share), "moved_after": moved,
            f"share_at_{DRIFT_WITHIN}": within, "share_at_end": trace[-1],
            "task_queries_after_drift": len(a), "trace": trace}  # fmt: skip


def _plots(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(w["dataset"] for w in results["warm"]))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        ws = [w for w in results["warm"] if w["dataset"] == name]
        cs = [c for c in results["cold"] if c["dataset"] == name]
        lines = [(ws, "o", "warm start (10 %)")]
        if cs:  # not with --no-cold
            lines.append((cs, "s", f"cold start ({cs[0]['model'].split('/')[-1]} added)"))
        for rows, marker, label in lines:
            xs = [x for x, _ in rows[0]["curve"]]
            ys = np.array([[y for _, y in r["curve"]] for r in rows])
            ax.errorbar(xs, ys.mean(0), yerr=ys.std(0), marker=marker, capsize=2, label=label)
        ax.axhline(
            np.mean([w["acc_full"] for w in ws]), color="k", ls="--", label="full information"
        )
        ax.axhline(np.mean([w["acc_10"] for w in ws]), color="grey", ls=":", label="10 % router")
        ax.set_title(f"{name}: bandit feedback (mean ± sd, {len(ws)} seeds)")
        ax.set_xlabel("stream queries")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    if results["drift"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for row in results["drift"]:
            hl = row["half_life"]
            ax.plot(row["trace"], label="no forgetting" if hl is None else f"half_life={hl:g}")
        ax.axhline(DRIFT_SHARE, color="grey", ls=":")
        r0 = results["drift"][0]
        ax.set_title(f"drift: {r0['model'].split('/')[-1]} scores 0 on {r0['task']}")
        ax.set_xlabel("task queries after the drift")
        ax.set_ylabel(f"its share (last {DRIFT_WINDOW})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path.replace(".png", "_drift.png"), dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=["dcrouter", "routerdc"])
    ap.add_argument("--explore", type=float, default=0.1, help="exploration share in (a)")
    ap.add_argument(
        "--explore-rule",
        default="thompson",
        choices=["thompson", "top-two"],
        help="how an exploration candidate picks its model in (a)",
    )
    ap.add_argument("--cold-explore", type=float, default=0.3, help="exploration share in (b)")
    ap.add_argument("--half-life", type=float, default=50.0)
    ap.add_argument(
        "--ipw-cap",
        type=float,
        default=None,
        help="weight outcomes by 1 / pick probability, capped (default: unweighted)",
    )
    ap.add_argument("--plot", default="docs/img/online.png")
    ap.add_argument("--json", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="each: which 10 %% start the router, and the stream order")  # fmt: skip
    ap.add_argument("--no-drift", action="store_true", help="skip the drift experiment (c)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold start experiment (b)")
    ap.add_argument(
        "--curve",
        type=float,
        nargs="*",
        default=None,
        help="also fit full-information routers on these fractions of the training queries "
        "(e.g. 0.2 0.3 0.4 0.6): how much of (a)'s gap more fully labelled data closes",
    )
    ap.add_argument("--refit-variants", action="store_true",
                    help=f"also refit with {', '.join(REFIT_VARIANT_SETTINGS)}")  # fmt: skip
    ap.add_argument("--dr-cap", type=float, default=None,
                    help="also refit on doubly robust outcomes, 1 / p capped at this")  # fmt: skip
    ap.add_argument(
        "--online-classifiers",
        action="store_true",
        help="Router(online_classifiers=True): update also moves the success classifiers",
    )
    ap.add_argument(
        "--from-json",
        nargs="+",
        default=None,
        help="only draw the plots from --json files of earlier runs (e.g. one per dataset)",
    )
    args = ap.parse_args()
    SETTINGS["online_classifiers"] = args.online_classifiers
    if args.refit_variants:
        REFIT_VARIANTS.update(REFIT_VARIANT_SETTINGS)
    if args.from_json:
        merged: dict[str, Any] = {"warm": [], "cold": [], "drift": []}
        for path in args.from_json:
            with open(path) as f:
                part = json.load(f)
            for key in merged:
                merged[key] += part.get(key, [])
        _plots(merged, args.plot)
        return
    emb = resolve_embedder(None)
    loaders = {"dcrouter": lambda s: load_dcrouter(s), "routerdc": lambda s: load_routerdc(s)}
    results: dict[str, Any] = {"warm": [], "cold": [], "drift": []}
    for name in args.datasets:
        train, test = loaders[name]("train"), loaders[name]("test")
        test = test.select_models(train.models)
        X, Xt = emb.embed(train.queries), emb.embed(test.queries)
        full = Router(**SETTINGS).fit(train, embeddings=X)
        if args.curve:
            acc_full = accuracy(full, Xt, test)
            for row in full_information_curve(train, test, X, Xt, args.curve, args.seeds, acc_full):
                results.setdefault("curve", []).append({"dataset": name, **row})
                print(json.dumps({"dataset": name, "curve": row}), flush=True)
        for seed in args.seeds:
            warm, cold = warm_and_cold(
                name,
                train,
                test,
                X,
                Xt,
                args.explore,
                args.cold_explore,
                seed,
                full,
                args.ipw_cap,
                not args.no_cold,
                args.dr_cap,
                args.explore_rule,
            )
            results["warm"].append(warm)
            print(json.dumps({k: v for k, v in warm.items() if k != "curve"}), flush=True)
            if cold is not None:
                results["cold"].append(cold)
                print(json.dumps({k: v for k, v in cold.items() if k != "curve"}), flush=True)
        ws = [w for w in results["warm"] if w["dataset"] == name]
        cs = [c for c in results["cold"] if c["dataset"] == name]
        summary: dict[str, Any] = {
            "dataset": name,
            "gap_closed_bandit": gap_closed(ws),
            "gap_closed_ceiling": gap_closed(ws, "acc_ceiling"),
            "gap_closed_refit": gap_closed(ws, "acc_refit"),
            "gap_closed_refit_filled": gap_closed(ws, "acc_refit_filled"),
            **(
                {
                    "gap_closed_refit_filled_hint": gap_closed(ws, "acc_refit_filled_hint"),
                    "gap_closed_refit_filled_hint_per_seed": [
                        gap_closed([w], "acc_refit_filled_hint") for w in ws
                    ],
                }
                if train.tasks is not None
                else {}
            ),
            **({"gap_closed_refit_dr": gap_closed(ws, "acc_refit_dr")} if args.dr_cap else {}),
            **{
                f"gap_closed_refit_{v}{t}": gap_closed(ws, f"acc_refit_{v}{t}")
                for v in REFIT_VARIANTS
                for t in ("", "_filled")
            },
            "gap_closed_per_seed": [gap_closed([w]) for w in ws],
            "gap_closed_refit_per_seed": [gap_closed([w], "acc_refit") for w in ws],
            "gap_closed_refit_filled_per_seed": [gap_closed([w], "acc_refit_filled") for w in ws],
        }
        if cs:
            summary |= {
                "cold_share": float(np.mean([c["share_online"] for c in cs])),
                "cold_share_sd": float(np.std([c["share_online"] for c in cs])),
                "cold_share_full": cs[0]["share_full"],
                "cold_acc": float(np.mean([c["acc_online"] for c in cs])),
                "cold_acc_sd": float(np.std([c["acc_online"] for c in cs])),
                "acc_full": cs[0]["acc_full"],
            }
        results.setdefault("summary", []).append(summary)
        print(json.dumps(summary), flush=True)
        if train.tasks is not None and not args.no_drift:
            for hl in (args.half_life, None):
                row = {"dataset": name, **drift(train, X, args.explore, hl, full, args.ipw_cap)}
                results["drift"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.plot:
        _plots(results, args.plot)


if __name__ == "__main__":
    main()
