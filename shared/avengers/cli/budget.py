"""``avengers calibrate``: choose a router's cost trade-off ``alpha`` for a budget by
cross-validation on training outcomes, and save the router with it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, friendly, load_data, router_arg


@friendly
def calibrate(
    router: Annotated[
        str, typer.Option("--router", "-r", help="Router folder, hub id, or 'pretrained'.")
    ],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", "-d", help="Training outcome file(s), with costs (or bundled:train)."
        ),
    ],
    target_cost: Annotated[
        float | None,
        typer.Option(help="Expected average cost per query to stay within (the data's unit)."),
    ] = None,
    target_share: Annotated[
        float | None,
        typer.Option(help="Largest share of queries (0-1) to send to the --share-model models."),
    ] = None,
    share_model: Annotated[
        list[str] | None, typer.Option(help="A model counted by --target-share (repeatable).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to save the calibrated router (else the input)."),
    ] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    duplicates: Annotated[
        str, typer.Option(help="Repeated queries: error, mean or first.")
    ] = "mean",
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Choose alpha so the expected cost per query (or a model set's traffic share) meets a
    target, and save the router with it."""
    if (target_cost is None) == (target_share is None):
        fail("give exactly one of --target-cost or --target-share (with --share-model)")
    if target_share is not None and not share_model:
        fail("--target-share needs at least one --share-model")
    r = router_arg(router)
    train = load_data(data, duplicates)
    X = r.embed(train.queries, show_progress=not as_json)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = r.calibrate(
            train,
            target_cost=target_cost,
            target_share=None if target_share is None else (share_model or [], target_share),
            folds=folds,
            embeddings=X,
            show_progress=not as_json,
        )
    dest = out if out is not None else Path(router)
    if out is None and not dest.is_dir():
        fail(f"{router!r} is not a local folder: give --out to save the calibrated router")
    r.save_pretrained(dest)
    for w in caught:
        typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
    if as_json:
        payload = result.to_dict()
        payload["saved_to"] = str(dest)
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(result.table())
    typer.echo(f"saved to {dest} (alpha = {result.alpha:g})")
