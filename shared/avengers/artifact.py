"""The saved-router folder: ``config.json`` (a JSON config plus the format name and version)
and ``router.safetensors`` (named arrays), plus an optional model card ``README.md``.

This module only moves a config dict and named arrays to and from disk or the Hugging Face Hub;
what they mean is :meth:`avengers.Router.state` / :meth:`avengers.Router.from_state`'s business.
:class:`PretrainedMixin` gives an estimator with ``state()``/``from_state()``/``summary()`` the
``save_pretrained``/``from_pretrained``/``push_to_hub`` of the Hugging Face libraries. No pickle is
written or read, ever. Hub access goes through ``huggingface_hub`` and honours
``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .card import model_card as make_model_card
from .embedding.base import Embedder
from .exceptions import ArtifactError
from .version import __version__

if TYPE_CHECKING:
    from typing_extensions import Self

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


class PretrainedMixin:
    """``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` for a class whose instances
    give their state as ``state()`` (a JSON-able config and named arrays) and a plain
    ``summary()`` for the model card, and whose ``from_state(config, arrays, embedder=...)``
    restores one (the :class:`avengers.Router`)."""

    if TYPE_CHECKING:

        def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...
        def summary(self) -> dict[str, Any]: ...
        @classmethod
        def from_state(
            cls, config: dict[str, Any], arrays: dict[str, np.ndarray], *, embedder: Any = None
        ) -> Self: ...

    def save_pretrained(self, path: str | Path, *, model_card: bool = True) -> Path:
        """Write ``config.json``, ``router.safetensors`` and a model card to ``path``."""
        config, arrays = self.state()
        card = make_model_card(self.summary()) if model_card else None
        return write_artifact(Path(path), config, arrays, card=card)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | Path,
        *,
        embedder: Embedder | str | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | None = None,
    ) -> Self:
        """Load a router from a local folder or a Hugging Face Hub repo id (honours
        ``HF_HUB_OFFLINE``). ``embedder`` overrides the recorded one (same dimension required)."""
        config, arrays, folder = read_artifact(
            path_or_repo_id, revision=revision, cache_dir=cache_dir, token=token
        )
        try:
            return cls.from_state(config, arrays, embedder=embedder)
        except ArtifactError as e:  # EmbedderMismatchError included: same type, with the folder
            raise type(e)(f"{folder}: {e}") from None

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str = "Upload Avengers router",
    ) -> str:
        """Upload the artifact to the Hugging Face Hub; returns the commit URL."""
        config, arrays = self.state()
        return push_artifact(
            repo_id,
            config,
            arrays,
            card=make_model_card(self.summary()),
            private=private,
            token=token,
            commit_message=commit_message,
        )
