"""``avengers train``: fit a router on outcome data (optionally choosing settings by
cross-validation with ``--tune``) and save it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from ._common import fail, friendly, load_data, router_arg


@friendly
def train(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", "-d", help="Outcome file(s): JSON, JSONL, CSV, Parquet; or bundled:train."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the router to.")],
    k: Annotated[
        int, typer.Option("--k", help="Number of clusters (the paper's default: 64).")
    ] = 64,
    alpha: Annotated[
        float, typer.Option(help="Performance/cost trade-off in [0, 1]; 1 = quality only.")
    ] = 1.0,
    top_k: Annotated[int, typer.Option(help="Models chosen per query.")] = 1,
    n_nearest: Annotated[
        int, typer.Option(help="Soft routing over this many nearest clusters.")
    ] = 5,
    shrinkage: Annotated[
        float, typer.Option(help="Pull small-cluster scores toward the global mean.")
    ] = 10.0,
    scoring: Annotated[str, typer.Option(help="cluster, knn or hybrid.")] = "cluster",
    clustering: Annotated[
        str, typer.Option(help="kmeans, minibatch, gmm or agglomerative.")
    ] = "kmeans",
    embedder: Annotated[
        str | None, typer.Option(help="Sentence-transformers model path or name.")
    ] = None,
    duplicates: Annotated[
        str, typer.Option(help="Repeated queries: error, mean or first.")
    ] = "error",
    seed: Annotated[int, typer.Option(help="Random seed for clustering.")] = 0,
    tune_grid: Annotated[
        list[str] | None,
        typer.Option(
            "--tune",
            help="Choose a setting by cross-validation on the training data, e.g. "
            "--tune k=8,16,32 --tune shrinkage=0,10 (k, n_nearest, shrinkage, scoring, "
            "clustering); the value given by its own option is ignored.",
        ),
    ] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds for --tune.")] = 5,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Read one Parquet file of wide rows in chunks (bounded memory, mini-batch "
            "k-means); for files larger than memory. See docs/scale.md.",
        ),
    ] = False,
    chunk_rows: Annotated[int, typer.Option(help="Rows read at a time with --stream.")] = 65_536,
    embedding_column: Annotated[
        str,
        typer.Option(
            help="With --stream: column of precomputed vectors, used when the file has it "
            "(computed by --embedder's model)."
        ),
    ] = "embedding",
    fill_from: Annotated[
        str | None,
        typer.Option(
            "--fill-from",
            help="A router (folder or hub id) whose expected scores fill the outcomes the data "
            "lacks: for refitting on a bandit log (docs/online.md). Its embedder is used unless "
            "--embedder is given.",
        ),
    ] = None,
    fill_by: Annotated[
        str,
        typer.Option(
            "--fill-by",
            help="With --fill-from: fill each gap with that router's expected score for the "
            "query (query), or the model's mean score on the row's task (task; needs task labels "
            "in the data and the router).",
        ),
    ] = "query",
) -> None:
    """Fit a router on outcome data and save it (``--stream``: a Parquet file larger than
    memory, in chunks)."""
    from ..exceptions import ClusterCountWarning
    from ..online import IMPUTE_BY
    from ..params import ClusterAlgorithm, ImputeBy, Scoring
    from ..router import Router
    from ..training.evaluation import cross_validate_best_single, tune

    if stream and fill_from:
        fail("--fill-from does not work with --stream: fill the log first (Router.impute)")
    if stream:
        _train_stream(
            data,
            out,
            k,
            alpha,
            top_k,
            n_nearest,
            shrinkage,
            scoring,
            clustering,
            embedder,
            seed,
            chunk_rows,
            embedding_column,
            tuned=bool(tune_grid),
        )
        return
    grid = _parse_grid(tune_grid or [])
    outcomes = load_data(data, duplicates)
    X = None
    if fill_by not in IMPUTE_BY:
        fail(f"--fill-by must be {' or '.join(IMPUTE_BY)}, not {fill_by!r}")
    if fill_by != "query" and not fill_from:
        fail("--fill-by says how --fill-from's router fills the gaps: give --fill-from")
    if fill_from:
        filler = router_arg(fill_from)
        embedder = embedder if embedder is not None else filler.embedder
        if fill_by == "query":
            X = filler.embed(outcomes.queries, show_progress=True)
        outcomes = filler.impute(outcomes, embeddings=X, by=cast(ImputeBy, fill_by))
        if embedder != filler.embedder:
            X = None  # the new router embeds with its own model
    for note in outcomes.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    router = Router(
        n_clusters=k,
        alpha=alpha,
        top_k=top_k,
        n_nearest=n_nearest,
        shrinkage=shrinkage,
        scoring=cast(Scoring, scoring),  # checked by Router against avengers.params
        clustering=cast(ClusterAlgorithm, clustering),
        embedder=embedder,
        random_state=seed,
    )
    if grid:
        if folds < 2 or folds > len(outcomes):
            fail(f"--folds must be between 2 and the number of queries ({len(outcomes)})")
        if X is None:
            X = router.embed(outcomes.queries, show_progress=True)
        best, results = tune(outcomes, grid, base=router, embeddings=X, folds=folds, seed=seed)
        baseline = cross_validate_best_single(outcomes, folds=folds, seed=seed)
        keys = list(grid)
        typer.echo(f"{folds}-fold cross-validation on the training data (mean held-out score):")
        for params, score in sorted(results, key=lambda r: -r[1]):
            mark = "*" if params == best else " "
            shown = "  ".join(f"{_GRID[name][0]}={params[name]}" for name in keys)
            typer.echo(f"{mark} {shown:40} {score:.4f}")
        typer.echo(f"  {'best single model (same folds)':40} {baseline:.4f}")
        router.set_params(**{name: best[name] for name in keys})
    with warnings.catch_warnings():  # said below as a note, in the command's own words
        warnings.simplefilter("ignore", ClusterCountWarning)
        if X is not None:
            router.fit(outcomes, embeddings=X)
        else:
            router.fit(outcomes, show_progress=True)
    router.save_pretrained(out)
    fitted = len(router.cluster_centers_)
    if fitted < router.n_clusters:
        typer.secho(
            f"note: K={router.n_clusters} is more than the {fitted} distinct training queries "
            f"allow; fitted {fitted} clusters",
            fg=typer.colors.YELLOW,
            err=True,
        )
    typer.echo(
        f"trained on {len(outcomes)} queries x {len(outcomes.models)} models, "
        f"{fitted} clusters, in {router.fit_seconds_:.1f}s -> {out}"
    )


def _train_stream(
    data: list[Path],
    out: Path,
    k: int,
    alpha: float,
    top_k: int,
    n_nearest: int,
    shrinkage: float,
    scoring: str,
    clustering: str,
    embedder: str | None,
    seed: int,
    chunk_rows: int,
    embedding_column: str,
    *,
    tuned: bool,
) -> None:
    """``avengers train --stream``: :func:`avengers.training.chunked.fit_stream` on one Parquet file."""
    from ..params import ClusterAlgorithm, Scoring
    from ..router import Router
    from ..training.chunked import fit_stream

    if tuned:
        fail("--tune needs every vector in memory; it cannot be combined with --stream")
    if len(data) != 1 or data[0].suffix.lower() not in (".parquet", ".pq"):
        fail("--stream reads one Parquet file (.parquet); see docs/scale.md for the layout")
    if chunk_rows < 1:
        fail("--chunk-rows must be at least 1")
    router = Router(
        n_clusters=k,
        alpha=alpha,
        top_k=top_k,
        n_nearest=n_nearest,
        shrinkage=shrinkage,
        scoring=cast(Scoring, scoring),
        clustering=cast(ClusterAlgorithm, clustering),
        embedder=embedder,
        random_state=seed,
    )
    fitted = fit_stream(
        router,
        data[0],
        chunk_rows=chunk_rows,
        embedding_column=embedding_column or None,
        progress=lambda msg: typer.echo(msg, err=True),
    )
    fitted.save_pretrained(out)
    summary = fitted.training_summary_
    typer.echo(
        f"trained on {summary['n_queries']:,} rows x {len(fitted.models_)} models (streamed), "
        f"{len(fitted.cluster_centers_)} clusters, in {fitted.fit_seconds_:.1f}s -> {out}"
    )


_GRID: dict[str, tuple[str, type]] = {  # Router setting -> (--tune name, value type)
    "n_clusters": ("k", int),
    "n_nearest": ("n_nearest", int),
    "shrinkage": ("shrinkage", float),
    "scoring": ("scoring", str),
    "clustering": ("clustering", str),
}


def _parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["k=8,16", "shrinkage=0,10"]`` -> ``{"n_clusters": [8, 16], "shrinkage": [0.0, 10.0]}``."""
    by_flag = {flag: name for name, (flag, _) in _GRID.items()}
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        flag, sep, values = spec.partition("=")
        flag = flag.strip().replace("-", "_")
        name = by_flag.get(flag, flag if flag in _GRID else "")
        if not sep or not name:
            fail(f"--tune {spec!r}: expected NAME=V1,V2,... with NAME one of {', '.join(by_flag)}")
        kind = _GRID[name][1]
        try:
            vals = [kind(v.strip()) for v in values.split(",") if v.strip()]
        except ValueError:
            fail(f"--tune {spec!r}: {flag} takes {kind.__name__} values")
        if not vals:
            fail(f"--tune {spec!r}: no values")
        grid[name] = vals
    return grid
