"""``avengers answer``: route a question, sample from the chosen model(s), vote, show the account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import friendly, router_arg


@friendly
def answer(
    question: Annotated[list[str], typer.Argument(help="Question text(s).")],
    endpoints: Annotated[
        Path, typer.Option("--endpoints", "-e", help="Endpoint file (YAML/TOML/JSON).")
    ],
    router: Annotated[
        str, typer.Option("--router", "-r", help="Router folder, hub id, or 'pretrained'.")
    ] = "pretrained",
    strategy: Annotated[
        str, typer.Option(help="self_consistency, model_switch or direct.")
    ] = "self_consistency",
    samples: Annotated[int, typer.Option("--samples", "-n", help="Samples per model.")] = 10,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    answer_type: Annotated[
        str, typer.Option(help="auto, choice, number, short, text or code.")
    ] = "auto",
    alpha: Annotated[float | None, typer.Option(help="Cost/quality trade-off for routing.")] = None,
    adaptive: Annotated[
        bool, typer.Option(help="Stop sampling once the leading answer is safe.")
    ] = True,
    max_tokens: Annotated[int | None, typer.Option(help="Completion length cap.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full account as JSON.")
    ] = False,
) -> None:
    """Answer question(s): route, sample, vote, and print the answer with its account."""
    from ..answering.answer import Answerer, SamplingConfig
    from ..answering.config import as_strategy

    cfg = SamplingConfig(
        strategy=as_strategy(strategy),
        n_samples=samples,
        temperature=temperature,
        answer_type=answer_type,
        alpha=alpha,
        adaptive=adaptive,
        max_tokens=max_tokens,
    )
    a = Answerer(router_arg(router), endpoints, cfg)
    results = a.answer_batch(question, max_concurrency=4)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for q, r in zip(question, results, strict=True):
        typer.secho(f"question: {q}", bold=True)
        typer.echo(r.summary())
        typer.echo("")
