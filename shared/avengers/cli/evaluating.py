"""``avengers evaluate``: measure a router on test outcomes against the best single model, the
oracle and random routing, optionally with plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import friendly, load_data, router_arg


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
    from ..training.evaluation import cost_headline, sweep_alpha
    from ..training.evaluation import evaluate as run_eval

    r = router_arg(router)
    test = load_data(data, duplicates)
    X = r.embed(test.queries, show_progress=not as_json)
    result = run_eval(r, test, embeddings=X)
    # the trade-off in words (the alpha curve's headline): alpha acts at routing time, no refit
    headline = cost_headline(sweep_alpha(r, test, test_embeddings=X)) if result.cost else None
    written: list[str] = []
    if plots is not None:
        from ..training.plots import skipped_plots, write_evaluation_plots

        train = load_data(train_data, duplicates) if train_data else None
        for why in skipped_plots(r, train):
            typer.secho(f"note: {why}", fg=typer.colors.YELLOW, err=True)
        say = None if as_json else (lambda line: typer.secho(line, err=True))
        written = [
            str(p)
            for p in write_evaluation_plots(
                r, test, plots, test_embeddings=X, train=train, progress=say
            )
        ]
    if as_json:
        payload = result.to_dict()
        payload["plots"] = written
        payload["cost_headline"] = headline
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(result.table())
    if headline:
        typer.echo(f"cost: {headline}")
    typer.echo("\nper model (test):")
    for m, v in sorted(result.per_model.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {m:44} {v:.4f}   routed {result.routed_share[m]:6.1%}")
