"""What the LangChain and LlamaIndex adapters share beyond calling the core: their constructors'
keyword check, defaults from the environment (the server's variables), the model name that
routes, settings as plain data (for ``dumpd`` and ``to_dict``), endpoint-wide timeout and retry
settings, and an offline token count."""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from dataclasses import fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from .answering.config import SETTINGS, SamplingConfig, fold_settings
from .embedding.base import default_model_path
from .exceptions import ConfigError
from .transport.endpoints import Endpoint, load_endpoints

ROUTER_ENV = "AVENGERS_ROUTER"
"""The router (folder, hub id or ``pretrained``) an adapter uses when none is given; the same
variable ``avengers serve`` workers read."""
ENDPOINTS_ENV = "AVENGERS_ENDPOINTS"
"""The endpoints file an adapter uses when none is given (as for ``avengers serve``)."""
ROUTED = "avengers"
"""The model name that routes; any other ``model`` pins that candidate."""


def check_keywords(owner: str, given: Collection[str], known: Collection[str]) -> None:
    """Raise :class:`ConfigError` naming each keyword in ``given`` that is neither in ``known``
    nor a sampling setting, with the closest name (a constructor never swallows a typo)."""
    known = {*known, *SETTINGS}
    unknown = sorted(set(given) - known)
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(
        f"{owner} got unknown keyword argument(s) {', '.join(parts)}: it takes its own fields "
        f"and the sampling settings ({', '.join(SETTINGS)})"
    )


def env_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``router`` and ``endpoints`` read from ``AVENGERS_ROUTER`` and
    ``AVENGERS_ENDPOINTS`` when they are not given."""
    for key, var in (("router", ROUTER_ENV), ("endpoints", ENDPOINTS_ENV)):
        if data.get(key) is None and os.environ.get(var):
            data[key] = os.environ[var]
    return data


def constructor_data(owner: str, data: Any, model_fields: Mapping[str, Any]) -> Any:
    """What an adapter's constructor validates: the sampling settings folded into ``sampling``,
    every keyword checked against the fields (and their aliases), ``router`` and ``endpoints``
    defaulted from the environment. Both adapters' ``mode="before"`` validators call it."""
    data = fold_settings(data, owner, model_fields)
    if isinstance(data, dict):
        known = {*model_fields, *(f.alias for f in model_fields.values() if f.alias)}
        check_keywords(owner, data, known)
        data = env_defaults(data)
    return data


def missing_setup(owner: str, router: Any, endpoints: Any, other: str = "") -> ConfigError:
    """The error for an adapter without a router or endpoints: what to pass, or set."""
    what = [
        f"{name} (or the environment variable {var})"
        for name, var, value in (
            ("router", ROUTER_ENV, router), ("endpoints", ENDPOINTS_ENV, endpoints),
        )
        if value is None
    ]  # fmt: skip
    return ConfigError(f"{owner} needs {' and '.join(what)}{other}")


def pinned(model: str | None) -> str | None:
    """The candidate a ``model`` name pins (None: ``avengers`` or nothing, which routes)."""
    return None if model in (None, "", ROUTED) else model


def with_call_settings(
    endpoints: Any, *, timeout: float | None = None, max_retries: int | None = None
) -> Any:
    """``endpoints`` with one ``timeout`` and ``max_retries`` for every endpoint (as
    ``ChatOpenAI(timeout=..., max_retries=...)`` sets them for its one endpoint); unchanged
    when neither is set."""
    if timeout is None and max_retries is None:
        return endpoints
    loaded = load_endpoints(endpoints)
    changes: dict[str, Any] = {}
    if timeout is not None:
        changes["timeout"] = float(timeout)
    if max_retries is not None:
        changes["max_retries"] = max_retries
    return {name: replace(e, **changes) for name, e in loaded.items()}


def sampling_data(cfg: SamplingConfig | Mapping[str, Any] | None) -> Any:
    """Sampling settings as plain data: the settings that differ from the paper's defaults
    (functions, such as a custom ``answer_type``, stay as they are: they do not serialise)."""
    if not isinstance(cfg, SamplingConfig):
        return dict(cfg) if isinstance(cfg, Mapping) else cfg
    default = SamplingConfig()
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value != getattr(default, f.name):
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def endpoints_data(endpoints: Any) -> Any:
    """Endpoints as plain data: a file's path as a string, ``Endpoint`` objects as a mapping of
    name to settings (which hold a key's variable name, never a key); mappings as given."""
    if isinstance(endpoints, Path):
        return str(endpoints)
    objects = (
        list(endpoints.values()) if isinstance(endpoints, Mapping) else endpoints
        if isinstance(endpoints, list) else None
    )  # fmt: skip
    if objects and all(isinstance(e, Endpoint) for e in objects):
        loaded = load_endpoints(endpoints)
        return {name: _endpoint_data(e) for name, e in loaded.items()}
    return endpoints


def _endpoint_data(e: Endpoint) -> dict[str, Any]:
    default = Endpoint(e.name, e.base_url)
    out = {}
    for f in fields(e):
        value = getattr(e, f.name)
        if f.name == "name" or (f.name != "base_url" and value == getattr(default, f.name)):
            continue
        if f.name == "capabilities":
            value = e.capabilities.to_dict()
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def router_data(router: Any) -> Any:
    """A router given by path as a string (a fitted ``Router`` object stays one: it does not
    serialise; give its folder, hub id or ``pretrained`` to serialise the adapter)."""
    return str(router) if isinstance(router, Path) else router


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from tokenizers import Tokenizer

    path = Path(default_model_path()) / "tokenizer.json"
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # a missing or unreadable file of the shipped model
        raise ConfigError(f"cannot read the bundled tokenizer {path}: {e}") from None
    tok.no_padding()  # the embedding model pads and cuts at 128 tokens; a count must not
    tok.no_truncation()
    return tok


def token_ids(text: str) -> list[int]:
    """``text``'s tokens by the router's own embedding model's tokenizer (all-MiniLM-L6-v2's
    WordPiece, shipped with the package, so it works offline): an estimate of what a candidate
    counts, whose own tokenizer may differ by some tens of percent."""
    return list(_tokenizer().encode(text, add_special_tokens=False).ids)


__all__ = [
    "ENDPOINTS_ENV",
    "ROUTED",
    "ROUTER_ENV",
    "check_keywords",
    "constructor_data",
    "endpoints_data",
    "env_defaults",
    "missing_setup",
    "pinned",
    "router_data",
    "sampling_data",
    "token_ids",
    "with_call_settings",
]
