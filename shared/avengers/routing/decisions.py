"""Turning an estimate (arrays for a batch of queries) into one :class:`RouteDecision` per query."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..decision import ModelScore, RouteDecision, RouteEstimate
from .exploration import pick_first

__all__ = ["decisions", "method_name", "task_names"]


def method_name(scoring: str, n_nearest: int) -> str:
    """What a decision says routed it: the scoring, or ``"soft-cluster"`` for cluster scoring
    over more than one cluster."""
    return scoring if n_nearest == 1 or scoring != "cluster" else "soft-cluster"


def task_names(hinted: np.ndarray | None, names: Sequence[str] | None, n: int) -> list[str | None]:
    """Per row, the name (of ``names``) of the task hint it was scored with (``hinted``: each
    row's index in ``names``, -1 for none, or None when no row has one)."""
    if hinted is None or not names:
        return [None] * n
    return [None if t < 0 else names[t] for t in hinted.tolist()]


def decisions(
    est: RouteEstimate,
    models: Sequence[str],
    *,
    queries: Sequence[str | None] | None,
    picks: Sequence[int],
    top_k: int,
    method: str,
    tasks: Sequence[str | None],
) -> list[RouteDecision]:
    """One decision per row of ``est``: its models ranked (an exploration pick, ``picks[i]`` >=
    0, moved to the front), the cluster evidence and why it fell back, if it did. ``tasks``: the
    task hint each row was scored with (None: none)."""
    # Python numbers row by row (``tolist`` gives the same floats as ``float()`` of each NumPy
    # scalar, at a fraction of the cost of indexing the arrays cell by cell)
    top_k = min(top_k, len(models))
    scores, perfs, evidences = (
        est.score.tolist(),
        est.performance.tolist(),
        est.evidence.tolist(),
    )
    costs = None if est.cost is None else est.cost.tolist()
    nearest, distance = est.nearest.tolist(), est.distance.tolist()
    clusters, weights = est.clusters.tolist(), est.weights.tolist()
    shares = None if est.classifier_share is None else est.classifier_share.tolist()
    out = []
    for i, order in enumerate(est.order.tolist()):
        score, perf, evidence = scores[i], perfs[i], evidences[i]
        cost = None if costs is None else costs[i]
        ranking = tuple(
            ModelScore(
                model=models[j],
                score=score[j],
                performance=perf[j],
                cost=None if cost is None else cost[j],
                evidence=evidence[j],
            )
            for j in (order if picks[i] < 0 else pick_first(order, picks[i]))
        )
        out.append(
            RouteDecision(
                query=None if queries is None else queries[i],
                ranking=ranking,
                cluster=nearest[i],
                distance=distance[i],
                top_k=top_k,
                cluster_weights=dict(zip(clusters[i], weights[i], strict=True)),
                fallback=est.fallback[i],
                method=method if est.fallback[i] is None else "global",
                explored=picks[i] >= 0,
                signal=est.signal[i],
                task=tasks[i],
                classifier_share=None if shares is None else shares[i],
            )
        )
    return out
