"""Model card (README.md) generated for a saved router."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .router import Router


def model_card(router: Router, *, max_rows: int = 64) -> str:
    s = router.training_summary_ or {}
    params = router.get_params()
    scores = router.cluster_scores()
    k = len(router.cluster_centers_)
    lines = [
        "---",
        "library_name: avengers-router",
        "tags: [llm-routing, avengers]",
        "---",
        "",
        "# Avengers router",
        "",
        "Routes each query to the candidate model that did best on similar training queries "
        "(embed → nearest k-means cluster → per-cluster model scores), after Zhang et al. (2025), "
        "*The Avengers: A Simple Recipe for Uniting Smaller Language Models*.",
        "",
        "```python",
        "from avengers import Router",
        'router = Router.from_pretrained("<this folder or repo id>")',
        'print(router.route("your question").explain())',
        "```",
        "",
        "## Settings",
        "",
        f"- embedder: `{router.embedder_name_}` ({router.n_features_in_}-d)",
        f"- clusters: {k} (asked: {params['n_clusters']}, algorithm: {params['clustering']})",
        f"- scoring: {params['scoring']}, soft routing over {params['n_nearest']} nearest "
        "cluster(s), "
        f"shrinkage {params['shrinkage']}, alpha {params['alpha']}",
        "",
        "## Training data",
        "",
        f"- source: `{s.get('source', 'unknown')}`",
        f"- queries: {s.get('n_queries', '?')}, models: {s.get('n_models', len(router.models_))}",
    ]
    if s.get("tasks"):
        lines.append("- tasks: " + ", ".join(f"{t} ({n})" for t, n in s["tasks"].items()))
    if s.get("missing"):
        lines.append(
            "- missing outcomes: " + ", ".join(f"{m}: {n}" for m, n in s["missing"].items())
        )
    for note in s.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "| model | mean score | mean cost |", "|---|---|---|"]
    costs = s.get("mean_cost", {})
    for m in router.models_:
        ms = s.get("mean_score", {}).get(m)
        c = costs.get(m)
        lines.append(
            f"| {m} | {'' if ms is None else f'{ms:.3f}'} | {'' if c is None else f'{c:.4g}'} |"
        )
    lines += [
        "",
        "## Clusters",
        "",
        "| cluster | size | top model | its score | runner-up |",
        "|---|---|---|---|---|",
    ]
    order = np.argsort(-router.cluster_sizes_)[:max_rows]
    for c in order:
        ranked = np.argsort(-scores[c])
        top, second = ranked[0], ranked[1] if len(ranked) > 1 else ranked[0]
        lines.append(
            f"| {c} | {int(router.cluster_sizes_[c])} | {router.models_[top]} | "
            f"{scores[c, top]:.3f} | {router.models_[second]} ({scores[c, second]:.3f}) |"
        )
    if k > max_rows:
        lines.append(f"| … | {k - max_rows} smaller clusters not shown | | | |")
    lines.append("")
    return "\n".join(lines)
