"""The JSON half of a router's saved state (``config.json``): written from the settings and
fitted attributes, and read back with clear errors; and the plain summary its model card shows.
The arrays are :class:`RouterParts`'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..embedding.embedders import Embedder, resolve_embedder
from ..exceptions import ArtifactError, EmbedderMismatchError
from ..params import ROUTER_PARAMS

__all__ = ["QUIET_DEFAULTS", "SavedConfig", "card_summary", "jsonable", "router_config"]

QUIET_DEFAULTS: dict[str, Any] = {
    "sharpen_quantile": None,
    "sharpen_width": 0.1,
    "online_classifiers": False,
}
"""Settings saved only when they differ from these values, so that older versions still read the
artifacts that do not use them (the online settings are treated alike)."""


def jsonable(x: Any) -> Any:
    """``x`` with NumPy scalars as Python numbers and NaN as None, so JSON can hold it."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def router_config(
    params: dict[str, Any],
    quiet: dict[str, Any],
    *,
    models: list[str],
    n_clusters: int,
    embedder: str,
    dimension: int,
    summary: dict[str, Any],
    tasks: list[str] | None,
) -> dict[str, Any]:
    """The config of a fitted router: its settings in the order of ``ROUTER_PARAMS`` (but the
    embedder, recorded by name and dimension, and the ``quiet`` ones left at their default)."""
    kept = {name: params[name] for name in ROUTER_PARAMS if name != "embedder"}
    for name, default in quiet.items():
        if kept[name] == default:
            del kept[name]
    return {
        "models": list(models),
        "n_clusters_fitted": n_clusters,
        "embedder": {"name": embedder, "dimension": int(dimension)},
        "params": jsonable(kept),
        "training_summary": jsonable(summary),
        **({"tasks": list(tasks)} if tasks else {}),
    }


@dataclass
class SavedConfig:
    """A config read back: settings, model names, embedder name and dimension, summary, tasks."""

    params: dict[str, Any]
    models: list[str]
    embedder: str
    dimension: int
    summary: dict[str, Any]
    tasks: list[str] | None

    @classmethod
    def read(cls, config: dict[str, Any]) -> SavedConfig:
        """Raise :class:`~avengers.ArtifactError` for a missing field or an unknown setting."""
        try:
            params = dict(config["params"])
            models = [str(m) for m in config["models"]]
            name = str(config["embedder"]["name"])
            dim = int(config["embedder"]["dimension"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"config: missing or bad field {e}") from None
        params.pop("embedder", None)
        # a state saved before the hybrid estimate existed routes as it did then
        params.setdefault("classifier_weight", 0.0)
        unknown = sorted(set(params) - set(ROUTER_PARAMS))
        if unknown:
            raise ArtifactError(f"config: unknown settings {unknown} (from a newer version?)")
        tasks = [str(t) for t in config["tasks"]] if config.get("tasks") else None
        return cls(params, models, name, dim, config.get("training_summary") or {}, tasks)

    def embedder_for(self, embedder: Embedder | str) -> Embedder:
        """``embedder`` resolved, if it gives vectors of the recorded dimension; else
        :class:`~avengers.EmbedderMismatchError`."""
        emb = resolve_embedder(embedder)
        if emb.dimension != self.dimension:
            raise EmbedderMismatchError(
                f"embedder {emb.name!r} gives {emb.dimension}-d vectors but the router was "
                f"trained with {self.embedder!r} ({self.dimension}-d)"
            )
        return emb


def card_summary(
    config: dict[str, Any], models: Sequence[str], scores: np.ndarray, sizes: np.ndarray
) -> dict[str, Any]:
    """A router's ``config`` plus one row per cluster with its size (``sizes``) and each
    model's expected score there (``scores``, clusters by models): what its model card shows."""
    rows = [
        {
            "cluster": c,
            "size": int(size),
            "scores": {m: float(s) for m, s in zip(models, scores[c], strict=True)},
        }
        for c, size in enumerate(sizes)
    ]
    return {**config, "clusters": rows}
