"""Every routing decision field, dumped to JSON, for a fixed battery of fits, estimates and updates.

Run it with two versions of the package on the path and compare the two files byte for byte: the
decomposition of the router (issue 27) must not change one float.

    PYTHONPATH=/work/main/shared python benchmarks/decisions_equal.py /tmp/old.json
    PYTHONPATH=$PWD/shared python benchmarks/decisions_equal.py /tmp/new.json
    cmp /tmp/old.json /tmp/new.json && echo identical

Or ``--compare OLD NEW`` to list the first differing entries. The queries are embedded with a
hashed bag of words (deterministic, no model needed), on the shared research data
(``../shared/data``, or ``$AVENGERS_DATA``): dcrouter (prices as costs), RouterDC (task labels)
and RouterBench (task labels and real costs). The settings are those the tests cover: cluster,
kNN, hybrid, the paper's plain method, relative temperature, sharpening, fallbacks, the cost
trade-off, task hints, exploration with a fixed seed (both rules, and pick probabilities),
online updates (forgetting, new models, weights, online classifiers), imputation and a state
round trip. Every floating-point number is written with ``repr``, so equal files mean equal bits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

DIM = 48
N_TRAIN = 1500
N_TEST = 200
N_SINGLE = 60  # test queries also routed one at a time (the one-query path)


def embed(queries: list[str]) -> np.ndarray:
    """A hashed bag of words, L2-normalised: similar wording, nearby vectors."""
    X = np.zeros((len(queries), DIM), dtype=np.float32)
    for i, q in enumerate(queries):
        for word in re.findall(r"\w+", q.lower()):
            h = hashlib.blake2b(word.encode(), digest_size=8).digest()
            X[i, h[0] % DIM] += 1.0 if h[1] & 1 else -1.0
            X[i, h[2] % DIM] += 0.5
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norm > 0, norm, 1.0)


def num(x: Any) -> Any:
    """JSON-able with exact floats (repr) and NaN spelled out."""
    if isinstance(x, dict):
        return {str(k): num(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [num(v) for v in x]
    if isinstance(x, np.ndarray):
        return num(x.tolist())
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return num({f.name: getattr(x, f.name) for f in dataclasses.fields(x)})
    return x


def decisions(router: Any, X: np.ndarray, queries: list[str], **kw: Any) -> dict[str, Any]:
    batch = router.route_embeddings(X, queries, **kw)
    singles = [
        router.route_embeddings(
            X[i : i + 1],
            [queries[i]],
            **{k: (v[i : i + 1] if k == "tasks" else v) for k, v in kw.items()},
        )[0]
        for i in range(min(N_SINGLE, len(X)))
    ]
    est = router.estimate(X, **kw)
    return {
        "batch": num(batch),
        "singles": num(singles),
        "estimate": num(est),
        "cluster_scores": num(router.cluster_scores()),
        "cluster_costs": num(router.cluster_costs()),
        "predict": num(router.predict(X)),
    }


def stats(router: Any) -> dict[str, Any]:
    config, arrays = router.state()
    return {"config": num(config), "arrays": {k: num(v) for k, v in sorted(arrays.items())}}


def battery() -> dict[str, Any]:
    from avengers import Router
    from avengers.training.datasets import load_dcrouter, load_routerbench, load_routerdc

    warnings.simplefilter("ignore")
    sets = {
        "dcrouter": (load_dcrouter("train"), load_dcrouter("test")),
        "routerdc": (load_routerdc("train"), load_routerdc("test")),
        "routerbench": (load_routerbench("train"), load_routerbench("test")),
    }
    out: dict[str, Any] = {}
    for name, (train, test) in sets.items():
        rng = np.random.default_rng(0)
        tr = train.subset(np.sort(rng.permutation(len(train))[:N_TRAIN]))
        te = test.subset(np.sort(rng.permutation(len(test))[:N_TEST]))
        Xtr, Xte = embed(list(tr.queries)), embed(list(te.queries))
        tasks = None if te.tasks is None else list(te.tasks)
        settings: dict[str, dict[str, Any]] = {
            "cluster": {"scoring": "cluster", "classifier_weight": 0.0},
            "default": {},
            "paper": {"n_nearest": 1, "shrinkage": 0.0, "classifier_weight": 0.0},
            "knn": {"scoring": "knn", "n_neighbors": 8},
            "hybrid": {"scoring": "hybrid"},
            "relative": {"temperature_mode": "relative", "softmax_temperature": 0.3},
            "sharpen": {"sharpen_quantile": 0.5, "sharpen_width": 0.1},
            "sharpen-step": {"sharpen_quantile": 0.5, "sharpen_width": 0.0, "scoring": "hybrid"},
            "fallbacks": {"far_quantile": 0.9, "min_cluster_size": 60},
            "tradeoff": {"alpha": 0.3, "top_k": 2, "classifier_evidence": 5.0},
            "explore": {"explore": 0.4, "random_state": 5},
            "explore-top-two": {"explore": 0.5, "explore_rule": "top-two", "random_state": 9},
        }
        for label, params in settings.items():
            router = Router(n_clusters=12, **params).fit(tr, embeddings=Xtr)
            entry = decisions(router, Xte, list(te.queries))
            if tasks is not None:
                entry["hinted"] = decisions(router, Xte, list(te.queries), tasks=tasks)
            if params.get("explore"):
                entry["pick_probabilities"] = num(router.pick_probabilities(Xte, draws=16))
            entry["round_trip"] = num(
                Router.from_state(*router.state()).route_embeddings(Xte[:50], alpha=0.5)
            )
            out[f"{name}/{label}"] = entry
        out.update(online(name, tr, te, Xtr, Xte, tasks))
    return out


def online(name: str, tr: Any, te: Any, Xtr: np.ndarray, Xte: np.ndarray, tasks: Any) -> Any:
    from avengers import Router

    half = len(tr) // 2
    a, b = np.arange(half), np.arange(half, len(tr))
    out: dict[str, Any] = {}
    for label, params in {
        "update": {},
        "update-forget": {"half_life": 20.0, "scoring": "hybrid"},
        "update-classifiers": {"online_classifiers": True, "explore": 0.2, "random_state": 1},
        "update-new-model": {"new_model_prior": 0.6, "explore": 0.3, "random_state": 2},
    }.items():
        router = Router(n_clusters=10, **params).fit(tr.subset(a), embeddings=Xtr[a])
        if label == "update-new-model":  # the last model joins after fit
            keep = [m for m in tr.models if m != tr.models[-1]]
            first = tr.subset(a).select_models(keep)
            router = Router(n_clusters=10, **params).fit(first, embeddings=Xtr[a])
        weights = None
        if label == "update-classifiers":
            weights = np.linspace(0.5, 2.0, len(b))
        router.update(tr.subset(b), embeddings=Xtr[b], weights=weights)
        entry = decisions(router, Xte, list(te.queries))
        entry["state"] = stats(router)
        if tasks is not None:
            entry["hinted"] = decisions(router, Xte, list(te.queries), tasks=tasks)
        # parallel observations, by cluster, for the first test rows
        rows = np.arange(40)
        best = np.nan_to_num(te.scores[rows], nan=-1).argmax(axis=1)
        router.update(
            models=[te.models[j] for j in best],
            scores=np.nan_to_num(te.scores[rows, best], nan=0.0),
            clusters=router.estimate(Xte[rows]).nearest,
        )
        entry["after_observations"] = decisions(router, Xte[:80], list(te.queries[:80]))
        entry["impute_query"] = num(router.impute(te, embeddings=Xte).scores)
        entry["impute_task"] = num(router.impute(te, by="task").scores)
        out[f"{name}/{label}"] = entry
    return out


def compare(old: Path, new: Path) -> int:
    a, b = json.loads(old.read_text()), json.loads(new.read_text())
    bad = []

    def walk(x: Any, y: Any, path: str) -> None:
        if len(bad) >= 20:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            if set(x) != set(y):
                bad.append(f"{path}: keys {sorted(set(x) ^ set(y))}")
            for k in sorted(set(x) & set(y)):
                walk(x[k], y[k], f"{path}/{k}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{path}[{i}]")
        elif x != y:
            bad.append(f"{path}: {str(x)[:80]} != {str(y)[:80]}")

    walk(a, b, "")
    entries = sum(1 for _ in _leaves(a))
    print(
        f"{len(a)} settings, {entries:,} values compared: " + ("identical" if not bad else "DIFFER")
    )
    for line in bad:
        print("  ", line)
    return 1 if bad else 0


def _leaves(x: Any) -> Any:
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        return compare(Path(sys.argv[2]), Path(sys.argv[3]))
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    import avengers

    result = battery()
    Path(sys.argv[1]).write_text(json.dumps(result, sort_keys=True))
    print(f"{avengers.__file__}: {len(result)} settings written to {sys.argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
