"""Helpers every command shares: the one-line failure, the wrapper that turns the package's own
errors into one, loading outcome data, and resolving the ``--router`` argument. Private to the
:mod:`avengers.cli` package."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import typer

from ..exceptions import AvengersError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
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


def load_data(paths: list[Path], duplicates: str) -> Any:
    """Outcome files, or ``bundled:train`` / ``bundled:test`` for the data shipped with the
    package (dcrouter, with model prices as costs)."""
    from ..training.bundled import load_bundled
    from ..training.data import Duplicates, OutcomeData, load_outcomes

    if duplicates not in ("error", "mean", "first"):
        fail(f"--duplicates must be error, mean or first, not {duplicates!r}")
    parts = []
    for p in paths:
        name = str(p)
        if name.startswith("bundled:"):
            parts.append(load_bundled(name.split(":", 1)[1]))
        else:
            parts.append(load_outcomes(p, duplicates=cast(Duplicates, duplicates)))
    return parts[0] if len(parts) == 1 else OutcomeData.concat(parts)


def router_arg(path: str) -> Any:
    """A router from a folder, a hub id, or ``pretrained`` (the one shipped with the package)."""
    from ..training.bundled import resolve_router

    return resolve_router(path)
