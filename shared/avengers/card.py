"""Model card (README.md) generated for a saved router, from the plain summary dict of
:meth:`avengers.Router.summary` (this module knows nothing else about routers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def model_card(summary: Mapping[str, Any], *, max_rows: int = 64) -> str:
    """Markdown model card: usage, settings, training data and the ``max_rows`` largest
    clusters with their best models."""
    s = summary.get("training_summary") or {}
    params = summary["params"]
    models = list(summary["models"])
    embedder = summary["embedder"]
    clusters = summary["clusters"]
    k = len(clusters)
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
        f"- embedder: `{embedder['name']}` ({embedder['dimension']}-d)",
        f"- clusters: {k} (asked: {params['n_clusters']}, algorithm: {params['clustering']})",
        f"- scoring: {params['scoring']}, soft routing over {params['n_nearest']} nearest "
        "cluster(s), "
        f"shrinkage {params['shrinkage']}, alpha {params['alpha']}",
        "",
        "## Training data",
        "",
        f"- source: `{s.get('source', 'unknown')}`",
        f"- queries: {s.get('n_queries', '?')}, models: {s.get('n_models', len(models))}",
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
    for m in models:
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
    largest = sorted(clusters, key=lambda row: -row["size"])[:max_rows]  # stable: ties by id
    for row in largest:
        ranked = sorted(row["scores"].items(), key=lambda ms: -ms[1])
        (top, top_score), (second, second_score) = ranked[0], ranked[min(1, len(ranked) - 1)]
        lines.append(
            f"| {row['cluster']} | {row['size']} | {top} | {top_score:.3f} | "
            f"{second} ({second_score:.3f}) |"
        )
    if k > max_rows:
        lines.append(f"| … | {k - max_rows} smaller clusters not shown | | | |")
    lines.append("")
    return "\n".join(lines)
