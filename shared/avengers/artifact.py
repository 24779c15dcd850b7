"""The saved router: ``config.json`` (settings, model names, embedder identity, format version)
plus ``router.safetensors`` (arrays) plus a generated model card ``README.md``. No pickle is
written or read, ever. Hub access goes through ``huggingface_hub`` and honours
``HF_HUB_OFFLINE``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .embedders import Embedder, resolve_embedder
from .exceptions import ArtifactError, EmbedderMismatchError

if TYPE_CHECKING:
    from .router import Router

FORMAT_NAME = "avengers-router"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "router.safetensors"
CARD_FILE = "README.md"

_ARRAYS = (
    "cluster_centers_",
    "cluster_sizes_",
    "score_sums_",
    "score_counts_",
    "global_scores_",
    "train_distances_",
)
_OPTIONAL_ARRAYS = (
    "cost_sums_",
    "cost_counts_",
    "global_costs_",
    "train_embeddings_",
    "train_scores_",
)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def router_config(router: Router) -> dict[str, Any]:
    from . import __version__

    params = router.get_params()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "models": list(router.models_),
        "n_clusters_fitted": len(router.cluster_centers_),
        "embedder": {"name": router.embedder_name_, "dimension": int(router.n_features_in_)},
        "params": {k: v for k, v in params.items()},
        "training_summary": _jsonable(router.training_summary_),
    }


def save_router(router: Router, path: Path, *, model_card: bool = True) -> Path:
    from safetensors.numpy import save_file

    router._check_fitted()
    path.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name in _ARRAYS + _OPTIONAL_ARRAYS:
        value = getattr(router, name, None)
        if value is not None:
            arr = np.ascontiguousarray(value)
            if name == "train_embeddings_":
                arr = arr.astype(np.float16)  # halves the file; routing is insensitive to it
            arrays[name.rstrip("_")] = arr
    # write to temporary names, then rename: a crash never leaves a half-written artifact
    tmp_w, tmp_c = path / (WEIGHTS_FILE + ".tmp"), path / (CONFIG_FILE + ".tmp")
    save_file(
        arrays, str(tmp_w), metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}
    )
    tmp_c.write_text(json.dumps(router_config(router), indent=2, allow_nan=False) + "\n")
    os.chmod(tmp_w, 0o644)
    os.replace(tmp_w, path / WEIGHTS_FILE)
    os.replace(tmp_c, path / CONFIG_FILE)
    if model_card:
        from .card import model_card as make_card

        (path / CARD_FILE).write_text(make_card(router))
    return path


def _resolve_dir(
    path_or_repo_id: str | Path,
    *,
    revision: str | None,
    cache_dir: str | Path | None,
    token: str | None,
) -> Path:
    p = Path(path_or_repo_id)
    if p.is_dir():
        return p
    if p.exists():
        raise ArtifactError(f"{p}: expected a router folder, found a file")
    repo_id = str(path_or_repo_id)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise ArtifactError(
            f"{repo_id}: no such router folder (and not a hub repo id 'owner/name')"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=str(cache_dir) if cache_dir else None,
            token=token,
            allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE],
        )
    except LocalEntryNotFoundError:
        raise ArtifactError(
            f"{repo_id}: not in the local hub cache and the hub cannot be reached "
            "(offline mode or no network)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ArtifactError(f"{repo_id}: could not fetch from the hub: {e}") from None
    return Path(local)


def load_router(
    cls: type[Router],
    path_or_repo_id: str | Path,
    *,
    embedder: Embedder | str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | None = None,
) -> Router:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = _resolve_dir(path_or_repo_id, revision=revision, cache_dir=cache_dir, token=token)
    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for f in (cfg_path, w_path):
        if not f.is_file():
            raise ArtifactError(f"{folder}: missing {f.name}; is this an avengers router folder?")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{cfg_path}: corrupted config ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{cfg_path}: not an avengers router config")
    version = cfg.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{cfg_path}: missing or bad format_version")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{cfg_path}: format version {version} is newer than this library reads "
            f"({FORMAT_VERSION}); upgrade avengers-router"
        )
    try:
        arrays = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{w_path}: corrupted or truncated weights ({e})") from None
    try:
        params = dict(cfg["params"])
        models = list(cfg["models"])
        emb_cfg = cfg["embedder"]
        dim = int(emb_cfg["dimension"])
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{cfg_path}: missing or bad field {e}") from None
    missing = [a for a in _ARRAYS if a.rstrip("_") not in arrays]
    if missing:
        raise ArtifactError(f"{w_path}: missing arrays {missing}")

    router = cls(**params, embedder=embedder if embedder is not None else emb_cfg["name"])
    router.models_ = models
    router.n_features_in_ = dim
    router.embedder_name_ = emb_cfg["name"]
    for name in _ARRAYS + _OPTIONAL_ARRAYS:
        key = name.rstrip("_")
        value = arrays.get(key)
        if name == "train_embeddings_" and value is not None:
            value = value.astype(np.float32)
        setattr(router, name, value)
    router.training_summary_ = cfg.get("training_summary", {})
    _check_shapes(router, w_path)
    if embedder is not None:
        emb = resolve_embedder(embedder)
        if emb.dimension != dim:
            raise EmbedderMismatchError(
                f"embedder {emb.name!r} gives {emb.dimension}-d vectors but the router at "
                f"{folder} was trained with {emb_cfg['name']!r} ({dim}-d)"
            )
        router._embedder = emb
    return router


def _check_shapes(router: Router, where: Path) -> None:
    k, d = router.cluster_centers_.shape
    m = len(router.models_)
    expect = {
        "cluster_sizes_": (k,),
        "score_sums_": (k, m),
        "score_counts_": (k, m),
        "global_scores_": (m,),
    }
    for name, shape in expect.items():
        if getattr(router, name).shape != shape:
            raise ArtifactError(
                f"{where}: array {name.rstrip('_')} has shape {getattr(router, name).shape}, "
                f"expected {shape} (corrupted artifact?)"
            )
    if d != router.n_features_in_:
        raise ArtifactError(f"{where}: centroids are {d}-d but config says {router.n_features_in_}")
    router.labels_ = np.zeros(0, dtype=np.int64)  # not stored; training labels are not needed


def push_router(
    router: Router, repo_id: str, *, private: bool, token: str | None, commit_message: str
) -> str:
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_router(router, Path(tmp))
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
