"""``avengers distill``: make a static embedder (model2vec) from a local sentence-transformers
model, offline, optionally with a vocabulary drawn from training queries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, friendly, load_data


@friendly
def distill(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write (default: the static-model cache, so 'static:NAME' finds it).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Name under the cache folder (ignored with --out)."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Local sentence-transformers model folder (default: bundled MiniLM)."),
    ] = None,
    pca_dims: Annotated[
        int, typer.Option(help="Reduce vectors to this many dimensions (0: keep the model's own).")
    ] = 256,
    vocabulary_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--vocabulary-from",
            help="Outcome data whose query words join the vocabulary (repeatable).",
        ),
    ] = None,
    min_count: Annotated[
        int, typer.Option(help="A query word joins the vocabulary if seen this often.")
    ] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Distil a static embedder (about 100x faster than MiniLM on CPU) and print how to use it."""
    from ..embedding.static import distill as make_static
    from ..embedding.static import query_vocabulary, static_dir

    if pca_dims < 0:
        fail("--pca-dims must be >= 0")
    if min_count < 1:
        fail("--min-count must be >= 1")
    vocab = None
    if vocabulary_from:
        data = load_data(vocabulary_from, "mean")
        vocab = query_vocabulary(data.queries, min_count=min_count)
        typer.echo(f"vocabulary: {len(vocab)} words from {len(data)} queries", err=True)
    label = name or (f"{(model.name if model else 'all-MiniLM-L6-v2')}-pca{pca_dims or 'full'}")
    if vocab and not name:
        label += "-vocab"
    target = out if out is not None else static_dir() / label
    typer.echo(f"distilling into {target} (about 1.5 minutes on 2 CPU cores)...", err=True)
    path = make_static(
        model, target, pca_dims=pca_dims or None, vocabulary=vocab, overwrite=overwrite
    )
    in_cache = path.resolve().parent == static_dir().resolve()
    spec = f"static:{path.name}" if in_cache else f"static:{path}"
    typer.echo(f"wrote {path}")
    typer.echo(f"use it with: avengers train --embedder {spec} ...  or Router(embedder={spec!r})")
    if not in_cache:
        typer.echo(
            f"note: a saved router records it as 'static:{path.name}' and finds it by that name "
            f"under {static_dir()}; copy the folder there, or pass embedder= when loading",
            err=True,
        )
