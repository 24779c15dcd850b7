"""The saved-router folder: ``config.json`` (a JSON config plus the format name and version)
and ``router.safetensors`` (named arrays), plus an optional model card ``README.md``.

This module only moves a config dict and named arrays to and from disk or the Hugging Face Hub;
what they mean is :meth:`avengers.Router.state` / :meth:`avengers.Router.from_state`'s business.
No pickle is written or read, ever. Hub access goes through ``huggingface_hub`` and honours
``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ArtifactError
from .version import __version__

FORMAT_NAME = "avengers-router"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "router.safetensors"
CARD_FILE = "README.md"

ENVELOPE_KEYS = ("format", "format_version", "library_version")
"""Config keys owned by the file format; :func:`read_artifact` checks and removes them."""


def write_artifact(
    path: Path, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *, card: str | None
) -> Path:
    """Write ``config`` (JSON-able) and ``arrays`` to the folder ``path``, and ``card`` as its
    README if given. Files are written under temporary names and then renamed, so a crash never
    leaves a half-written artifact."""
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    envelope = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
    }
    tmp_w, tmp_c = path / (WEIGHTS_FILE + ".tmp"), path / (CONFIG_FILE + ".tmp")
    save_file(
        {name: np.ascontiguousarray(a) for name, a in arrays.items()},
        str(tmp_w),
        metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)},
    )
    tmp_c.write_text(json.dumps({**envelope, **config}, indent=2, allow_nan=False) + "\n")
    os.chmod(tmp_w, 0o644)
    os.replace(tmp_w, path / WEIGHTS_FILE)
    os.replace(tmp_c, path / CONFIG_FILE)
    if card is not None:
        (path / CARD_FILE).write_text(card)
    return path


def read_artifact(
    path_or_repo_id: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray], Path]:
    """The config (without the format keys), the arrays and the local folder of a saved router
    in a folder or a hub repo. Raises :class:`~avengers.ArtifactError` for a missing, corrupted
    or newer-format artifact."""
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
    config = {k: v for k, v in cfg.items() if k not in ENVELOPE_KEYS}
    return config, arrays, folder


def push_artifact(
    repo_id: str,
    config: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    card: str | None,
    private: bool,
    token: str | None,
    commit_message: str,
) -> str:
    """Upload an artifact to the Hugging Face Hub (creating the repo if needed); returns the
    commit URL."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            write_artifact(Path(tmp), config, arrays, card=card)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=tmp, commit_message=commit_message
            )
    except OfflineModeIsEnabled:
        raise ArtifactError(
            f"{repo_id}: cannot push, HF_HUB_OFFLINE is set (unset it to upload, or use "
            "save_pretrained(folder) to keep the router locally)"
        ) from None
    except HfHubHTTPError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ArtifactError(
            f"{repo_id}: the hub refused the upload ({first}); check the repo id and your "
            "token (huggingface-cli login or token=...)"
        ) from None
    except (httpx.TransportError, OSError) as e:
        raise ArtifactError(
            f"{repo_id}: cannot reach the Hugging Face Hub ({type(e).__name__}); check the "
            "network, or use save_pretrained(folder) to keep the router locally"
        ) from None
    return str(getattr(info, "commit_url", info))


def _resolve_dir(
    path_or_repo_id: str | Path,
    *,
    revision: str | None,
    cache_dir: str | Path | None,
    token: str | None,
) -> Path:
    """A local folder as is; otherwise a hub repo id, downloaded (or found in the cache)."""
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
