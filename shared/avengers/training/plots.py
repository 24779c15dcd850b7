"""PNG plots for people who would rather look than read: the per-cluster score heatmap, accuracy
against K, and the accuracy-cost curve over alpha."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..router import Router
from .data import OutcomeData
from .evaluation import Evaluation, sweep_alpha, sweep_k


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cluster_heatmap(router: Router, path: Path, *, max_clusters: int = 64) -> Path:
    plt = _plt()
    scores = router.cluster_scores()
    order = np.argsort(-router.cluster_sizes_)[:max_clusters]
    width = max(5.5, 1.2 + 0.9 * len(router.models_))  # room for the title with few models
    fig, ax = plt.subplots(figsize=(width, 1.8 + 0.18 * len(order)))
    im = ax.imshow(scores[order], aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(router.models_)))
    ax.set_xticklabels(
        [m.split("/")[-1] for m in router.models_], rotation=45, ha="right", fontsize=8
    )
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([f"{c} (n={router.cluster_sizes_[c]})" for c in order], fontsize=6)
    best = scores[order].argmax(axis=1)
    ax.scatter(best, range(len(order)), marker="*", color="white", s=20, label="top model")
    ax.set_title("Expected score per cluster and model\n(largest clusters first)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_accuracy_vs_k(results: list[Evaluation], path: Path) -> Path:
    plt = _plt()
    ks = [r.settings["n_clusters"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, [r.accuracy for r in results], "o-", label="routed")
    ax.axhline(results[0].best_single, color="gray", ls="--", label="best single")
    ax.axhline(results[0].oracle, color="green", ls=":", label="oracle")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K (clusters)")
    ax.set_ylabel("accuracy (mean score)")
    ax.set_title("Accuracy against K")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _alpha_labels(
    results: list[Evaluation], costs: list[float]
) -> list[tuple[str, tuple[float, float]]]:
    """One label per distinct point of the alpha curve: neighbouring alphas that land on the
    same (cost, accuracy) share a label such as ``0.0-0.4`` instead of printing over each
    other."""
    groups: list[tuple[list[float], tuple[float, float]]] = []
    x_span = (max(costs) - min(costs)) or 1.0
    y_span = (max(r.accuracy for r in results) - min(r.accuracy for r in results)) or 1.0
    for r, c in zip(results, costs, strict=True):
        a = float(r.settings["alpha"])
        if groups:
            _, (c0, y0) = groups[-1]
            if abs(c - c0) < 0.03 * x_span and abs(r.accuracy - y0) < 0.03 * y_span:
                groups[-1][0].append(a)
                continue
        groups.append(([a], (c, r.accuracy)))
    return [
        (f"{al[0]:.1f}" if len(al) == 1 else f"{al[0]:.1f}-{al[-1]:.1f}", point)
        for al, point in groups
    ]


_LABEL_OFFSETS: tuple[tuple[float, float], ...] = tuple(
    (r * dx, r * dy)
    for r in (4, 12, 22, 34, 48)
    for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.4), (0, -1.4), (1.4, 0), (-1.4, 0))
)
"""Where an alpha label may go, in points from its point: nearest first, around the point."""


def place_alpha_labels(ax: Any, results: list[Evaluation], costs: list[float]) -> list[Any]:
    """Annotate the alpha curve's points so no label covers another label or a point: each label
    takes the nearest free spot of :data:`_LABEL_OFFSETS` (a thin leader line joins a label
    placed away from its point). Returns the annotations. Call once the axes hold every
    artist (the positions are measured in the rendered figure)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = [
        Bbox.from_bounds(x - 4, y - 4, 8, 8)
        for x, y in ax.transData.transform(np.column_stack([costs, [r.accuracy for r in results]]))
    ]
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    inside = ax.get_window_extent(renderer)
    placed = []
    for label, point in _alpha_labels(results, costs):
        chosen = None
        for dx, dy in _LABEL_OFFSETS:
            far = abs(dx) > 6 or abs(dy) > 6
            ann = ax.annotate(
                label, point, fontsize=7, xytext=(dx, dy), textcoords="offset points",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5, "shrinkA": 0,
                            "shrinkB": 3} if far else None,
            )  # fmt: skip
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer).padded(1)
            fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0
            if fits and box.y1 <= inside.y1 and not any(box.overlaps(t) for t in taken):
                chosen = (ann, box)
                break
            ann.remove()
        if chosen is None:  # nowhere free: the plain spot, as before
            ann = ax.annotate(label, point, fontsize=7, xytext=(3, 3), textcoords="offset points")
            ann.update_positions(renderer)
            chosen = (ann, Text.get_window_extent(ann, renderer))
        placed.append(chosen[0])
        taken.append(chosen[1])
    return placed


def plot_alpha_curve(results: list[Evaluation], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    costs = [r.cost or 0.0 for r in results]
    ax.plot(costs, [r.accuracy for r in results], "o-", label="routed, alpha 0..1")
    b = results[0]
    if b.best_single_cost is not None:
        ax.scatter(
            [b.best_single_cost],
            [b.best_single],
            marker="s",
            color="gray",
            zorder=3,
            label=f"best single ({b.best_single_model.split('/')[-1]})",
        )
    ax.axhline(b.oracle, color="green", ls=":", label="oracle")
    ax.set_xlabel("average cost per query")
    ax.set_ylabel("accuracy (mean score)")
    ax.set_title("Accuracy-cost trade-off over alpha")
    ax.legend(fontsize=8)
    fig.tight_layout()
    place_alpha_labels(ax, results, costs)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def skipped_plots(router: Router, train: OutcomeData | None) -> list[str]:
    """Why :func:`write_evaluation_plots` leaves a plot out, one line per missing plot."""
    why = []
    if router.global_costs_ is None:
        why.append(
            "alpha_curve.png skipped: the training data had no costs, so there is no "
            "accuracy-cost trade-off to draw"
        )
    if train is None:
        why.append(
            "accuracy_vs_k.png skipped: the K sweep refits the router, so it needs the "
            "training outcomes (pass --train-data)"
        )
    return why


def write_evaluation_plots(
    router: Router,
    test: OutcomeData,
    folder: Path,
    *,
    test_embeddings: np.ndarray | None = None,
    train: OutcomeData | None = None,
    ks: tuple[int, ...] = (4, 8, 16, 32, 64, 128),
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the heatmap, the alpha curve (when costs are known) and, given training data, the
    accuracy-against-K curve. Returns the files written. ``progress`` (e.g. ``print``) hears
    about each step, since the K sweep refits the router once per K."""
    say = progress or (lambda _: None)
    folder.mkdir(parents=True, exist_ok=True)
    X = router.embed(test.queries) if test_embeddings is None else test_embeddings
    out = [plot_cluster_heatmap(router, folder / "cluster_heatmap.png")]
    say(f"plot: {out[-1]}")
    if router.global_costs_ is not None:
        out.append(
            plot_alpha_curve(
                sweep_alpha(router, test, test_embeddings=X), folder / "alpha_curve.png"
            )
        )
        say(f"plot: {out[-1]}")
    if train is not None:
        X_train = router.embed(train.queries, show_progress=progress is not None)
        res = []
        for i, k in enumerate(ks, 1):
            t0 = time.perf_counter()
            res += sweep_k(
                train, test, (k,), base=router, train_embeddings=X_train, test_embeddings=X
            )
            say(f"K sweep {i}/{len(ks)}: K={k} refitted in {time.perf_counter() - t0:.1f}s")
        out.append(plot_accuracy_vs_k(res, folder / "accuracy_vs_k.png"))
        say(f"plot: {out[-1]}")
    return out
