"""Static embeddings: a model2vec ``StaticModel`` distilled from a sentence-transformers model.

A static model is a table of one vector per token; a text's vector is the mean of its tokens'
vectors. Embedding needs only numpy and a tokenizer (no torch), so one query takes tens of
microseconds instead of milliseconds. Making one ("distilling") needs torch once, offline:

* :func:`distill` writes a static model folder from a local sentence-transformers model.
* :func:`query_vocabulary` picks words from training queries to add to its vocabulary.
* :func:`fit_projection` adds a linear map fitted so the static vectors imitate another
  embedder's on some texts (training queries); the map is stored in the folder.
* :class:`StaticEmbedder` embeds with a static model folder. The default one is distilled from
  the bundled all-MiniLM-L6-v2 into ``<cache>/static/all-MiniLM-L6-v2-pca256`` by the setup
  script, or on first use (``python -m avengers.embedding.static`` does it on demand).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigError
from .base import Embedder, check_texts, default_cache_dir, default_model_path, normalize_rows

DEFAULT_STATIC = "all-MiniLM-L6-v2-pca256"
PROJECTION_FILE = "avengers_projection.npy"
INFO_FILE = "avengers_static.json"


def static_dir() -> Path:
    """Folder holding static models by name: ``<cache>/static`` (``$AVENGERS_CACHE`` or
    ``~/.cache/avengers``)."""
    return default_cache_dir() / "static"


def default_static_path() -> Path:
    """Where the default static model (MiniLM, PCA to 256 dimensions) lives."""
    return static_dir() / DEFAULT_STATIC


def find_static(spec: str) -> Path:
    """The folder for a static model spec: an existing folder path, else a name under
    :func:`static_dir`. The default model's name is returned even if not distilled yet."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return p
    if "/" not in spec and os.sep not in spec:
        named = static_dir() / spec
        if named.is_dir() or spec == DEFAULT_STATIC:
            return named
    raise ConfigError(
        f"static model {spec!r} not found: not a folder, and not a name under {static_dir()} "
        "(distill one with avengers.embedding.static.distill)"
    )


def ensure_default_static(*, show_progress: bool = True) -> Path:
    """The default static model's folder, distilling it from the bundled MiniLM (about 1-2 minutes
    on 2 CPU cores, once) when it is missing. Says so on stderr when it distils."""
    path = default_static_path()
    if not (path / "model.safetensors").is_file():
        print(
            f"avengers: distilling the default static embedder from all-MiniLM-L6-v2 into "
            f"{path} (once; about 1-2 minutes on CPU)...",
            file=sys.stderr,
            flush=True,
        )
        t = time.perf_counter()
        distill(None, path, pca_dims=256, exist_ok=True, show_progress=show_progress)
        print(
            f"avengers: static embedder ready ({time.perf_counter() - t:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return path


class StaticEmbedder:
    """Embeds with a model2vec static model folder (numpy only). With no ``path`` the default model
    is used (distilled on first use if missing). The name is ``static:<folder name>``, which
    :func:`~avengers.embedding.embedders.resolve_embedder` turns back into this embedder. If the folder holds
    a projection (see :func:`fit_projection`), vectors are mapped through it."""

    def __init__(self, path: str | Path | None = None, *, max_length: int | None = None) -> None:
        self.path = default_static_path() if path is None else find_static(str(path))
        self._default = self.path == default_static_path()  # distilled on first use if missing
        self.max_length = max_length
        suffix = "" if max_length is None else f"@{max_length}"
        self._name = f"static:{self.path.name}{suffix}"
        self._model: Any = None
        self._projection: np.ndarray | None = None
        self._fallback: np.ndarray | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StaticEmbedder(name={self._name!r}, path={str(self.path)!r})"

    @property
    def name(self) -> str:
        return self._name

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if self._default:
                    ensure_default_static()
                from model2vec import StaticModel

                try:
                    model = StaticModel.from_pretrained(
                        self.path, normalize=True, force_download=False
                    )
                except Exception as e:
                    raise ConfigError(f"could not load static model {self.path}: {e}") from None
                if self.max_length is not None:
                    model.max_length = self.max_length
                proj = self.path / PROJECTION_FILE
                self._projection = np.load(proj).astype(np.float32) if proj.is_file() else None
                # texts with no known token (e.g. "") get the mean token direction, so every row
                # stays unit length
                mean = np.asarray(model.embedding, dtype=np.float32).mean(axis=0, keepdims=True)
                self._fallback = normalize_rows(mean)[0]
                self._model = model
            return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        if self._projection is not None:
            return int(self._projection.shape[1])
        return int(model.dim)

    def embed_raw(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length static vectors before any projection."""
        model = self._load()
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, int(model.dim)), dtype=np.float32)
        one = _encode_one(model, texts[0]) if len(texts) == 1 else None
        X = np.asarray(
            model.encode(texts, use_multiprocessing=False) if one is None else one,
            dtype=np.float32,
        )
        norms = np.linalg.norm(X, axis=1)
        if (norms < 1e-6).any():
            X[norms < 1e-6] = self._fallback
        return normalize_rows(X)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        X = self.embed_raw(texts)
        if self._projection is not None:
            X = normalize_rows(X @ self._projection)
        return X

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """Async twin of :meth:`embed`. One short text (a routed query) is embedded on the event
        loop (tens of microseconds: less than a hop to a worker thread and back); the first call
        (which loads, or even distils, the model) and larger inputs go to a worker thread, where
        the tokenizer runs beside the loop (inline batches stalled it: fewer routes per second)."""
        texts = check_texts(texts)
        if self._model is not None and _inline_ok(texts):
            return self.embed(texts)
        return await asyncio.to_thread(self.embed, texts)


INLINE_MAX_TEXTS = 1
"""At most this many texts, of at most :data:`INLINE_MAX_CHARS` characters together, are embedded
on the event loop by :meth:`StaticEmbedder.aembed` (well under a millisecond of CPU)."""
INLINE_MAX_CHARS = 2000


def _inline_ok(texts: Sequence[str]) -> bool:
    return len(texts) <= INLINE_MAX_TEXTS and sum(len(t) for t in texts) <= INLINE_MAX_CHARS


def _encode_one(model: Any, text: str) -> np.ndarray | None:
    """``model.encode([text])`` for a plain static model (no token mapping or weights), with the
    same arithmetic but without its per-call batching, progress bar and tokenizer reconfiguration
    (most of the cost of one short query). None when the model is not plain or its tokenizer is
    not truncating at the model's ``max_length``: then ``encode`` is used."""
    if model.token_mapping is not None or model.weights is not None:
        return None
    max_length = model.max_length
    truncation = model.tokenizer.truncation
    if (truncation or {}).get("max_length") != max_length:
        return None
    if max_length is not None:
        text = text[: max_length * model.median_token_length]
    # model.tokenize([text])[0]: the same ids, without the batch call's thread pool hand-off
    ids = model.tokenizer.encode(text, add_special_tokens=False).ids
    if model.unk_token_id is not None:
        ids = [i for i in ids if i != model.unk_token_id]
    table = model.embedding
    out = np.zeros((1, model.dim), dtype=np.float32 if table.dtype == np.int8 else table.dtype)
    if ids:
        out[0] = table[np.array([ids], dtype=np.int64)].mean(axis=1)[0]
    if not model.normalize:
        return out
    out32 = out.astype(np.float32)
    norm = np.linalg.norm(out32, axis=1, keepdims=True) + 1e-32
    return (out32 / norm).astype(out.dtype)


_WORD = re.compile(r"\b[^\W\d_]{2,24}\b")


def query_vocabulary(
    queries: Iterable[str], *, min_count: int = 2, max_words: int = 30_000
) -> list[str]:
    """Words (letters only, lower-cased, 2 to 24 characters) seen at least ``min_count`` times
    in ``queries``, most frequent first, at most ``max_words``. Pass the result to :func:`distill`
    as ``vocabulary``; words the base tokenizer already has are skipped by the distillation."""
    counts: Counter[str] = Counter()
    for q in queries:
        counts.update(w.lower() for w in _WORD.findall(q))
    return [w for w, c in counts.most_common(max_words) if c >= min_count]


def distill(
    model_path: str | Path | None,
    out_dir: str | Path,
    *,
    pca_dims: int | None = 256,
    vocabulary: Sequence[str] | None = None,
    quantize_to: str = "float16",
    exist_ok: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Distil a static model from the local sentence-transformers model at ``model_path`` (None:
    the bundled all-MiniLM-L6-v2) into ``out_dir``; returns ``out_dir``. ``pca_dims`` reduces the
    vectors to that many dimensions (None keeps the model's own); ``vocabulary`` adds whole words
    (see :func:`query_vocabulary`). The folder is written to a temporary name and renamed when
    complete. If ``out_dir`` exists: returned as is with ``exist_ok``, replaced with ``overwrite``,
    else an error. Needs torch; runs offline (about 90 s for MiniLM on 2 CPU cores)."""
    out = Path(out_dir).expanduser()
    if out.exists() and not overwrite:
        if exist_ok:
            return out
        raise ConfigError(f"{out} already exists (pass overwrite=True to replace it)")
    src = str(model_path) if model_path is not None else default_model_path()
    if not Path(src).is_dir():
        raise ConfigError(f"distill needs a local sentence-transformers model folder; got {src!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from model2vec.distill import distill as m2v_distill

    if not show_progress:
        _quiet_progress()
    try:
        model = m2v_distill(
            src,
            vocabulary=list(vocabulary) if vocabulary else None,
            pca_dims=pca_dims,
            quantize_to=quantize_to,
        )
    except Exception as e:
        raise ConfigError(f"could not distil a static model from {src}: {e}") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        info = {
            "base_model": Path(src).name,
            "pca_dims": pca_dims,
            "vocabulary_words": len(vocabulary or ()),
            "quantize_to": quantize_to,
            "dimension": int(model.dim),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _publish(tmp, out, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def fit_projection(
    static: StaticEmbedder,
    target: Embedder,
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    ridge: float = 1.0,
    overwrite: bool = False,
) -> Path:
    """Copy ``static``'s folder to ``out_dir`` with a linear map ``W`` (ridge least squares, penalty
    ``ridge``) fitted so that ``static vector @ W`` approximates ``target``'s vector on ``texts``.
    Fit on training queries only. The resulting embedder has ``target``'s dimension; its name
    comes from ``out_dir``."""
    out = Path(out_dir).expanduser()
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists (pass overwrite=True to replace it)")
    W = projection_matrix(static.embed_raw(texts), target.embed(list(texts)), ridge=ridge)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for f in static.path.iterdir():
            if f.is_file() and f.name != PROJECTION_FILE:
                shutil.copy2(f, tmp / f.name)
        np.save(tmp / PROJECTION_FILE, W)
        info_path = tmp / INFO_FILE
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        info["projection"] = {"target": target.name, "texts": len(texts), "ridge": ridge}
        info_path.write_text(json.dumps(info, indent=2) + "\n")
        _publish(tmp, out, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def projection_matrix(S: np.ndarray, T: np.ndarray, *, ridge: float = 1.0) -> np.ndarray:
    """Ridge least-squares map ``W`` minimising ``|S W - T|^2 + ridge |W|^2``."""
    if len(S) != len(T) or len(S) == 0:
        raise ConfigError(f"need matching, non-empty rows to fit a projection ({len(S)}, {len(T)})")
    S64, T64 = S.astype(np.float64), T.astype(np.float64)
    A = S64.T @ S64 + ridge * np.eye(S.shape[1])
    return np.linalg.solve(A, S64.T @ T64).astype(np.float32)


def _publish(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the finished ``tmp`` folder to ``out``. A folder another process published meanwhile
    is kept unless ``overwrite``."""
    if out.exists():
        if not overwrite:
            return
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:
        if not out.exists():
            raise


def _quiet_progress() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avengers.embedding.static [--quiet]``: make sure the default static model exists (distil
    it if missing; ``--quiet`` hides the progress bars) and print its folder."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = ensure_default_static(show_progress="--quiet" not in args)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
