"""Routing accuracy with static (model2vec) embeddings versus MiniLM, and cheap ways to close the gap.

For each shared test set (dcrouter test; routerdc in distribution; routerdc out of distribution)
the package's default ``Router()`` is fitted on the training split with each embedding and
scored on the test split (mean test score of the chosen model, averaged over k-means seeds).
Variants of the static embedder:

* the default (MiniLM distilled, PCA to 256 dimensions);
* no PCA (384 dimensions);
* whole words from the training queries added to the vocabulary before distilling;
* a ridge map ``W`` fitted on the TRAINING queries only so that static vectors times ``W``
  approximate MiniLM's (what :func:`avengers.embedding.static.fit_projection` stores with a model);
* other K for the router.

Distilled variants are written once under ``<cache>/static`` (each takes minutes on 2 CPU cores);
MiniLM vectors are cached on disk, so reruns take about a minute.

    .venv/bin/python benchmarks/static_quality.py [--data-dir ../shared/data] [--seeds 3]
        [--skip-distill]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from avengers import Router, evaluate
from avengers.embedding.base import normalize_rows as _normalize
from avengers.embedding.embedders import resolve_embedder
from avengers.embedding.static import (
    StaticEmbedder,
    default_static_path,
    distill,
    projection_matrix,
    query_vocabulary,
    static_dir,
)
from avengers.training.data import OutcomeData
from avengers.training.datasets import load_dcrouter, load_routerdc

warnings.filterwarnings("ignore")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Split:
    name: str
    train_name: str
    train: OutcomeData
    test: OutcomeData


def accuracy(
    params: dict[str, Any], s: Split, X: np.ndarray, Y: np.ndarray, seeds: int
) -> tuple[float, float]:
    """Mean and standard deviation over k-means seeds of the test accuracy."""
    accs = []
    for seed in range(seeds):
        r = Router(**{**params, "random_state": seed})
        r.fit(s.train, embeddings=X)
        accs.append(evaluate(r, s.test, embeddings=Y).accuracy)
    return float(np.mean(accs)), float(np.std(accs))


def static_variant(name: str, make: Any, skip: bool) -> StaticEmbedder | None:
    path = static_dir() / name
    if not (path / "model.safetensors").is_file():
        if skip:
            log(f"skipping {name} (not distilled; run without --skip-distill)")
            return None
        log(f"distilling {name} (minutes) ...")
        make()
    return StaticEmbedder(path)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, default=3, help="k-means seeds averaged per cell")
    ap.add_argument("--skip-distill", action="store_true", help="use only variants already made")
    ap.add_argument(
        "--sets", default="dcrouter,routerdc", help="comma-separated: dcrouter, routerdc (ID + OOD)"
    )
    args = ap.parse_args()

    sets = args.sets.split(",")
    trains: dict[str, OutcomeData] = {}
    splits = []
    if "dcrouter" in sets:
        trains["dcrouter"] = dtrain = load_dcrouter("train", args.data_dir)
        splits.append(
            Split("dcrouter test", "dcrouter", dtrain, load_dcrouter("test", args.data_dir))
        )
    if "routerdc" in sets:
        trains["routerdc"] = rtrain = load_routerdc("train", args.data_dir)
        splits += [
            Split("routerdc in-dist", "routerdc", rtrain, load_routerdc("test", args.data_dir)),
            Split("routerdc OOD", "routerdc", rtrain, load_routerdc("ood", args.data_dir)),
        ]
    minilm = resolve_embedder(None)  # cached on disk
    if hasattr(minilm, "show_progress"):
        minilm.show_progress = True
    default = StaticEmbedder()
    nopca = static_variant(
        "all-MiniLM-L6-v2-nopca",
        lambda: distill(None, static_dir() / "all-MiniLM-L6-v2-nopca", pca_dims=None),
        args.skip_distill,
    )
    vocab: dict[str, StaticEmbedder | None] = {}
    for tname, train in trains.items():
        vname = f"all-MiniLM-L6-v2-pca256-vocab-{tname}"
        words = query_vocabulary(train.queries)
        vocab[tname] = static_variant(
            vname,
            lambda words=words, vname=vname: distill(  # type: ignore[misc]
                None, static_dir() / vname, pca_dims=256, vocabulary=words
            ),
            args.skip_distill,
        )
    log(f"default static model: {default_static_path()}")

    ours = Router().get_params()
    ours.pop("embedder", None)
    rows: dict[str, dict[str, str]] = {}
    for s in splits:
        log(f"{s.name}: embedding {len(s.train)} + {len(s.test)} queries with MiniLM (cached)")
        T, TY = minilm.embed(s.train.queries), minilm.embed(s.test.queries)
        ref, ref_sd = accuracy(ours, s, T, TY, args.seeds)
        log(f"  MiniLM (reference): {ref:.4f}")
        cells: list[tuple[str, float, float]] = [("MiniLM (reference)", ref, ref_sd)]

        def add(
            label: str,
            X: np.ndarray,
            Y: np.ndarray,
            params: dict[str, Any] = ours,
            s: Split = s,
            cells: list[tuple[str, float, float]] = cells,
        ) -> None:
            t = time.perf_counter()
            a, sd = accuracy(params, s, X, Y, args.seeds)
            cells.append((label, a, sd))
            log(f"  {label}: {a:.4f} ({time.perf_counter() - t:.0f} s)")

        S, SY = default.embed(s.train.queries), default.embed(s.test.queries)
        add("static pca256 (default)", S, SY)
        for k in (32, 128):
            add(f"static pca256, K={k}", S, SY, {**ours, "n_clusters": k})
        for lam in (0.1, 1.0):
            W = projection_matrix(S, T, ridge=lam)
            add(f"static pca256 + map (ridge {lam})", _normalize(S @ W), _normalize(SY @ W))
        if nopca is not None:
            N, NY = nopca.embed(s.train.queries), nopca.embed(s.test.queries)
            add("static no PCA (384-d)", N, NY)
            W = projection_matrix(N, T, ridge=0.1)
            add("static no PCA + map (ridge 0.1)", _normalize(N @ W), _normalize(NY @ W))
        v = vocab[s.train_name]
        if v is not None:
            V, VY = v.embed(s.train.queries), v.embed(s.test.queries)
            add("static pca256 + train vocabulary", V, VY)
            W = projection_matrix(V, T, ridge=0.1)
            add(
                "static pca256 + vocabulary + map (ridge 0.1)",
                _normalize(V @ W),
                _normalize(VY @ W),
            )
        for label, a, sd in cells:
            delta = "" if label.startswith("MiniLM") else f"{100 * (a - ref):+.2f}"
            rows.setdefault(label, {})[s.name] = f"{a:.4f} ± {sd:.4f} | {delta}"

    print(
        f"\nDefault `Router()` (K=64 soft), accuracy mean ± sd over {args.seeds} k-means seeds, and"
    )
    print("difference from MiniLM in points.\n")
    head = " | ".join(f"{s.name} | Δ" for s in splits)
    print(f"| embedding | {head} |")
    print("|---|" + "---|---|" * len(splits))
    for label, by_set in rows.items():
        print(f"| {label} | " + " | ".join(by_set.get(s.name, "– | –") for s in splits) + " |")


if __name__ == "__main__":
    main()
