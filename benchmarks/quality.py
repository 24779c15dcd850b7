"""Issue 16: distance-aware soft routing and the hybrid estimate, chosen on training data only.

1. Selection (training data only): for a small grid of routing settings, 5-fold cross-validation
   on the dcrouter, routerdc and routerbench training splits, plus leave-one-task-out on routerdc's
   *training* rows (train on five tasks, validate on the sixth task's training rows). The chosen
   setting has the best mean accuracy over these four blocks among the qualifying settings.
   A setting qualifies if it loses no more than 0.3 points of CV accuracy in distribution and no
   more than 1 point on any one held-out task against today's default (a gain on one unseen
   task may not be bought with a loss on another).
2. Test: today's default, the chosen setting, the paper setting, per-model logistic regression,
   task-label router, best single model and oracle on the four shared test sets and with each
   routerdc task held out, with paired standard errors (same test rows, per-query differences).

    PYTHONPATH=shared python benchmarks/quality.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any

import numpy as np
from avengers import Router
from avengers.embedding.embedders import resolve_embedder
from avengers.training.data import OutcomeData
from avengers.training.datasets import RDC_ID_TASKS, load_dcrouter, load_routerbench, load_routerdc

warnings.filterwarnings("ignore")

TODAY: dict[str, Any] = {}  # today's default settings
GRID: dict[str, dict[str, Any]] = {
    "today's default": TODAY,
    "before issue 16 (clf=0)": {"classifier_weight": 0.0},
    "clf=0.3": {"classifier_weight": 0.3},
    "T=0.03": {"softmax_temperature": 0.03},
    "T=0.02": {"softmax_temperature": 0.02},
}
for q in (0.5, 0.75, 0.9):  # distance-aware soft routing: sharper beyond a distance quantile
    for width in (0.0, 0.1):
        GRID[f"sharpen q={q} w={width}"] = {"sharpen_quantile": q, "sharpen_width": width}
IN_DIST_TOLERANCE = 0.003  # a setting may lose at most this much CV accuracy in distribution
TASK_TOLERANCE = 0.01  # ... and at most this much on any one held-out routerdc task


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def picks(r: Router, Y: np.ndarray) -> np.ndarray:
    return r.estimate(Y).best


def scores0(d: OutcomeData) -> np.ndarray:
    return np.nan_to_num(d.scores, nan=0.0)


def grid_accuracies(
    tr: OutcomeData, X: np.ndarray, va: OutcomeData, Y: np.ndarray
) -> dict[str, float]:
    """Fit once (classifiers included), then vary the routing-time settings."""
    r = Router(classifier_weight=0.1).fit(tr, embeddings=X)
    S = scores0(va.select_models(r.models_))
    default = {k: v for k, v in Router().get_params().items() if k != "embedder"}
    out = {}
    for name, p in GRID.items():
        r.set_params(**{**default, **p})
        out[name] = float(S[np.arange(len(S)), picks(r, Y)].mean())
    return out


def cv(data: OutcomeData, X: np.ndarray, folds: int = 5) -> dict[str, float]:
    parts = np.array_split(np.random.default_rng(0).permutation(len(data)), folds)
    accs: dict[str, list[float]] = {n: [] for n in GRID}
    for i in range(folds):
        tr = np.concatenate([p for j, p in enumerate(parts) if j != i])
        a = grid_accuracies(data.subset(tr), X[tr], data.subset(parts[i]), X[parts[i]])
        for n, v in a.items():
            accs[n].append(v)
    return {n: float(np.mean(v)) for n, v in accs.items()}


def loto_cv(data: OutcomeData, X: np.ndarray) -> dict[str, dict[str, float]]:
    """Per held-out task, each setting's accuracy on that task's training rows."""
    tasks = np.array(data.tasks)
    out = {}
    for t in RDC_ID_TASKS:
        tr, va = np.flatnonzero(tasks != t), np.flatnonzero(tasks == t)
        out[t] = grid_accuracies(data.subset(tr), X[tr], data.subset(va), X[va])
    return out


def lr_picks(train: OutcomeData, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The competitor of docs/benchmarks.md: one logistic regression per model on success >= 0.5."""
    from sklearn.linear_model import LogisticRegression

    S = np.nan_to_num(train.scores)
    P = np.zeros((len(Y), S.shape[1]))
    for j in range(S.shape[1]):
        y = (S[:, j] >= 0.5).astype(int)
        P[:, j] = (
            y[0]
            if y.min() == y.max()
            else (LogisticRegression(max_iter=1000).fit(X, y).predict_proba(Y)[:, 1])
        )
    return P.argmax(1)


def task_label_picks(train: OutcomeData, test: OutcomeData) -> np.ndarray | None:
    """Best training model per task label (the ceiling of task-level routing)."""
    if train.tasks is None or test.tasks is None:
        return None
    tt = np.array(train.tasks)
    best = {}
    for t in set(train.tasks):
        s = train.scores[tt == t]
        best[t] = int(np.nanargmax(np.nanmean(np.where(np.isnan(s), np.nan, s), axis=0)))
    if not all(t in best for t in test.tasks):
        return None
    return np.array([best[t] for t in test.tasks])


def fmt_diff(S: np.ndarray, a: np.ndarray, b: np.ndarray) -> str:
    rows = np.arange(len(S))
    d = S[rows, a] - S[rows, b]
    se = d.std(ddof=1) / np.sqrt(len(d))
    return f"{100 * d.mean():+.2f} ± {100 * se:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--chosen", default=None, help="skip selection; use this GRID name")
    args = ap.parse_args()
    d = args.data_dir
    emb = resolve_embedder(None)
    log("loading and embedding (cached)")
    dc_tr, dc_te = load_dcrouter("train", d), load_dcrouter("test", d)
    rb_tr, rb_te = load_routerbench("train", d), load_routerbench("test", d)
    rdc_tr, rdc_te, rdc_ood = (
        load_routerdc("train", d),
        load_routerdc("test", d),
        load_routerdc("ood", d),
    )
    E = {id(x): emb.embed(x.queries) for x in (dc_tr, dc_te, rb_tr, rb_te, rdc_tr, rdc_te, rdc_ood)}

    # ------------------------------------------------------------ 1. selection on training data
    if args.chosen is None:
        log("cross-validation on training data")
        blocks = {
            "dcrouter 5-fold": cv(dc_tr, E[id(dc_tr)]),
            "routerdc 5-fold": cv(rdc_tr, E[id(rdc_tr)]),
            "routerbench 5-fold": cv(rb_tr, E[id(rb_tr)]),
        }
        per_task = loto_cv(rdc_tr, E[id(rdc_tr)])
        blocks["routerdc leave-one-task-out (train rows)"] = {
            n: float(np.mean([per_task[t][n] for t in per_task])) for n in GRID
        }
        in_dist = list(blocks)[:3]
        base = "today's default"
        ok = {
            n
            for n in GRID
            if all(blocks[b][n] >= blocks[b][base] - IN_DIST_TOLERANCE for b in in_dist)
            and all(per_task[t][n] >= per_task[t][base] - TASK_TOLERANCE for t in per_task)
        }
        mean = {n: float(np.mean([blocks[b][n] for b in blocks])) for n in GRID}
        chosen = max(ok, key=lambda n: mean[n])
        print("## Selection on training data (cross-validated accuracy)\n")
        print(
            "| setting | "
            + " | ".join(blocks)
            + " | mean | held out: "
            + " | ".join(per_task)
            + " | within tolerance |"
        )
        print("|---" * (len(blocks) + len(per_task) + 3) + "|")
        for n in GRID:
            cells = " | ".join(f"{blocks[b][n]:.4f}" for b in blocks)
            tcells = " | ".join(f"{per_task[t][n]:.4f}" for t in per_task)
            mark = " **chosen**" if n == chosen else ""
            print(
                f"| {n}{mark} | {cells} | {mean[n]:.4f} | {tcells} | {'yes' if n in ok else 'no'} |"
            )
        print()
    else:
        chosen = args.chosen
    new = GRID[chosen]
    log(f"chosen: {chosen} {new}")

    # ------------------------------------------------------------ 2. test sets
    sets = [
        ("dcrouter", dc_tr, dc_te),
        ("routerdc in-distribution", rdc_tr, rdc_te),
        ("routerdc out-of-distribution", rdc_tr, rdc_ood),
        ("routerbench", rb_tr, rb_te),
    ]
    tasks = np.array(rdc_tr.tasks)
    te_tasks = np.array(rdc_te.tasks)
    for t in RDC_ID_TASKS:
        tr_i, te_i = np.flatnonzero(tasks != t), np.flatnonzero(te_tasks == t)
        sets.append((f"LOTO {t}", rdc_tr.subset(tr_i), rdc_te.subset(te_i)))
        E[id(sets[-1][1])] = E[id(rdc_tr)][tr_i]
        E[id(sets[-1][2])] = E[id(rdc_te)][te_i]
    print(f"## Test sets (new = {chosen})\n")
    print("accuracy; differences in points with paired standard errors (same test rows)\n")
    print(
        "| test set | n | today's default | new | paper K=64 | logistic regression | "
        "new + task hint | task-label router | best single (train) | best single (hindsight) | oracle | "
        "new − today | new − paper | new − LR |"
    )
    print("|---" * 14 + "|")
    for name, tr, te in sets:
        log(f"test: {name}")
        X, Y = E[id(tr)], E[id(te)]
        te = te.select_models(tr.models)
        S = scores0(te)
        rows = np.arange(len(S))
        r_today = Router(**TODAY).fit(tr, embeddings=X)
        r_new = Router(**new).fit(tr, embeddings=X)
        r_paper = Router.paper(64).fit(tr, embeddings=X)
        p_today, p_new, p_paper = picks(r_today, Y), picks(r_new, Y), picks(r_paper, Y)
        p_lr = lr_picks(tr, X, Y)
        p_task = task_label_picks(tr, te)
        p_hint = None
        if p_task is not None:  # every test task was seen in training: hint each query's task
            p_hint = r_new.estimate(Y, tasks=te.tasks).best
        best = int(np.argmax(r_today.global_scores_))  # chosen on train

        def acc(p: np.ndarray, S: np.ndarray = S, rows: np.ndarray = rows) -> float:
            return float(S[rows, p].mean())

        task_cell = "n/a" if p_task is None else f"{acc(p_task):.4f}"
        hint_cell = "n/a" if p_hint is None else f"{acc(p_hint):.4f}"
        print(
            f"| {name} | {len(S)} | {acc(p_today):.4f} | {acc(p_new):.4f} | {acc(p_paper):.4f} | "
            f"{acc(p_lr):.4f} | {hint_cell} | {task_cell} | {S[:, best].mean():.4f} | {S.mean(0).max():.4f} | "
            f"{S.max(1).mean():.4f} | {fmt_diff(S, p_new, p_today)} | "
            f"{fmt_diff(S, p_new, p_paper)} | {fmt_diff(S, p_new, p_lr)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
