"""``avengers route`` and ``avengers info``: where queries go and why, and what a saved router
holds."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._common import friendly, router_arg


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
    r = router_arg(router)
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


@friendly
def info(
    router: Annotated[
        str, typer.Option("--router", "-r", help="Router folder, hub id, or 'pretrained'.")
    ] = "pretrained",
) -> None:
    """Print a saved router's settings and training summary."""
    r = router_arg(router)
    typer.echo(repr(r))
    typer.echo(f"embedder: {r.embedder_name_} ({r.n_features_in_}-d)")
    typer.echo(f"clusters: {len(r.cluster_centers_)}   models: {', '.join(r.models_)}")
    s = r.training_summary_
    typer.echo(f"trained on: {s.get('source')} ({s.get('n_queries')} queries)")
