"""The ``avengers`` command line: train, evaluate and route (plus the commands that other modules
register: collect, answer, serve). A user mistake ends in one clear line and exit code 2, never a
traceback."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .exceptions import AvengersError

app = typer.Typer(
    name="avengers",
    help="Route each query to the best of your own LLMs: embed, cluster, score, vote.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def friendly(fn: F) -> F:
    """Turn the package's own errors (and missing files) into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AvengersError as e:
            fail(str(e))
        except FileNotFoundError as e:
            fail(f"{e.filename or e}: no such file")
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]


def _load_data(paths: list[Path], duplicates: str) -> Any:
    """Outcome files, or ``bundled:train`` / ``bundled:test`` for the data shipped with the
    package (dcrouter, with model prices as costs)."""
    from .bundled import load_bundled
    from .data import OutcomeData, load_outcomes

    if duplicates not in ("error", "mean", "first"):
        fail(f"--duplicates must be error, mean or first, not {duplicates!r}")
    parts = []
    for p in paths:
        name = str(p)
        if name.startswith("bundled:"):
            parts.append(load_bundled(name.split(":", 1)[1]))
        else:
            parts.append(load_outcomes(p, duplicates=duplicates))  # type: ignore[arg-type]
    return parts[0] if len(parts) == 1 else OutcomeData.concat(parts)


def _router_arg(path: str) -> Any:
    from .bundled import resolve_router

    return resolve_router(path)


@app.command()
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
) -> None:
    """Fit a router on outcome data and save it."""
    from .evaluation import cross_validate_best_single, tune
    from .router import Router

    grid = _parse_grid(tune_grid or [])
    outcomes = _load_data(data, duplicates)
    for note in outcomes.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    router = Router(
        n_clusters=k,
        alpha=alpha,
        top_k=top_k,
        n_nearest=n_nearest,
        shrinkage=shrinkage,
        scoring=scoring,  # type: ignore[arg-type]
        clustering=clustering,
        embedder=embedder,
        random_state=seed,
    )
    if grid:
        if folds < 2 or folds > len(outcomes):
            fail(f"--folds must be between 2 and the number of queries ({len(outcomes)})")
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


@app.command()
@friendly
def evaluate(
    router: Annotated[
        str, typer.Option("--router", "-r", help="Router folder, hub id, or 'pretrained'.")
    ],
    data: Annotated[list[Path], typer.Option("--data", "-d", help="Test outcome file(s).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    plots: Annotated[Path | None, typer.Option(help="Write PNG plots to this folder.")] = None,
    train_data: Annotated[
        list[Path] | None,
        typer.Option("--train-data", help="Training outcomes, for the K sweep plot."),
    ] = None,
    duplicates: Annotated[
        str, typer.Option(help="Repeated queries: error, mean or first.")
    ] = "mean",
) -> None:
    """Measure a router on test outcomes against best single model, oracle and random."""
    from .evaluation import evaluate as run_eval

    r = _router_arg(router)
    test = _load_data(data, duplicates)
    X = r.embed(test.queries, show_progress=not as_json)
    result = run_eval(r, test, embeddings=X)
    written: list[str] = []
    if plots is not None:
        from .plots import write_evaluation_plots

        train = _load_data(train_data, duplicates) if train_data else None
        written = [
            str(p) for p in write_evaluation_plots(r, test, plots, test_embeddings=X, train=train)
        ]
    if as_json:
        payload = result.to_dict()
        payload["plots"] = written
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(result.table())
    typer.echo("\nper model (test):")
    for m, v in sorted(result.per_model.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {m:44} {v:.4f}   routed {result.routed_share[m]:6.1%}")
    for p in written:
        typer.echo(f"plot: {p}")


@app.command()
@friendly
def route(
    query: Annotated[list[str], typer.Argument(help="Query text(s).")],
    router: Annotated[
        str, typer.Option("--router", "-r", help="Router folder, hub id, or 'pretrained'.")
    ] = "pretrained",
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    alpha: Annotated[float | None, typer.Option(help="Override the router's alpha.")] = None,
) -> None:
    """Show where a query goes and why (cluster, ranked models, scores, costs)."""
    r = _router_arg(router)
    if alpha is not None:
        r.set_params(alpha=alpha)
    decisions = r.route_batch(query)
    if as_json:
        typer.echo(json.dumps([d.to_dict() for d in decisions], indent=2))
        return
    for d in decisions:
        typer.secho(f"query: {d.query}", bold=True)
        typer.echo(d.explain())
        typer.echo("")


@app.command()
@friendly
def info(
    router: Annotated[
        str, typer.Option("--router", "-r", help="Router folder, hub id, or 'pretrained'.")
    ] = "pretrained",
) -> None:
    """Print a saved router's settings and training summary."""
    r = _router_arg(router)
    typer.echo(repr(r))
    typer.echo(f"embedder: {r.embedder_name_} ({r.n_features_in_}-d)")
    typer.echo(f"clusters: {len(r.cluster_centers_)}   models: {', '.join(r.models_)}")
    s = r.training_summary_
    typer.echo(f"trained on: {s.get('source')} ({s.get('n_queries')} queries)")


# Commands that live in their own modules register themselves here when present.
_EXTENSIONS = ("avengers.cli_collect", "avengers.cli_answer", "avengers.cli_serve")


def _register_extensions() -> None:
    for name in _EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        mod.register(app)


_register_extensions()


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(args=argv if argv is not None else sys.argv[1:], prog_name="avengers")


if __name__ == "__main__":
    main()
