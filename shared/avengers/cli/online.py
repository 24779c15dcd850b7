"""``avengers update`` and ``avengers snapshot``: a new router version from new outcomes or from
the ratings in a feedback store, written atomically (see :mod:`avengers.stores.snapshot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, friendly, load_data, router_arg


def _target(router: str, out: Path | None) -> Path:
    """Where the new version goes: ``--out``, else the router folder itself."""
    if out is not None:
        return out
    if not Path(router).is_dir():
        fail(f"--out is required when --router is not a local folder ({router!r})")
    return Path(router)


@friendly
def update(
    router: Annotated[str, typer.Option("--router", "-r", help="Router folder (or hub id).")],
    data: Annotated[
        list[Path], typer.Option("--data", "-d", help="Outcome file(s), as for train.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="New router folder (default: in place).")
    ] = None,
    duplicates: Annotated[
        str, typer.Option(help="Repeated (query, model) rows: error, mean or first.")
    ] = "mean",
) -> None:
    """Add new outcomes to a router's cluster statistics (no re-clustering) and save it."""
    from ..stores.snapshot import save_atomically

    target = _target(router, out)
    r = router_arg(router)
    outcomes = load_data(data, duplicates)
    r.update(outcomes)
    save_atomically(r, target)
    n = int((~outcomes.missing).sum())
    typer.echo(f"added {n} outcomes on {len(outcomes)} queries; saved {target}")


@friendly
def snapshot(
    router: Annotated[str, typer.Option("--router", "-r", help="Router folder (or hub id).")],
    store: Annotated[
        str, typer.Option("--store", "-s", help="Feedback store: SQLite file or redis:// URL.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="New router folder (default: in place).")
    ] = None,
) -> None:
    """Apply the ratings a feedback store holds (those newer than the router's) and save."""
    from ..stores.feedback import open_store
    from ..stores.snapshot import SEQ_KEY, apply_store, save_atomically

    target = _target(router, out)
    if "://" not in store and not Path(store).is_file():
        fail(f"{store}: no such feedback store")
    r = router_arg(router)
    s = open_store(store)
    try:
        n = apply_store(r, s)
    finally:
        s.close()
    save_atomically(r, target)
    typer.echo(
        f"applied {n} ratings (up to #{r.training_summary_.get(SEQ_KEY, 0)}); saved {target}"
    )
