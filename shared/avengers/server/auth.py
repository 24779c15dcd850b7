"""Client API keys: where the server reads them from, and the bearer-token check."""

from __future__ import annotations

import hmac
import os
from collections.abc import Collection, Mapping
from pathlib import Path

from ..exceptions import ConfigError


def load_api_keys(env: str = "AVENGERS_SERVER_KEYS", file: str | Path | None = None) -> set[str]:
    """Client keys the server accepts: comma-separated in an environment variable and/or one per
    line in a file (blank lines and ``#`` comments skipped). An empty set means no
    authentication; a file without any key is a :class:`ConfigError`, never an open server."""
    keys = {k.strip() for k in os.environ.get(env, "").split(",") if k.strip()}
    if file is not None:
        p = Path(file)
        if not p.is_file():
            raise ConfigError(f"API key file not found: {p}")
        found = {
            ln.strip()
            for ln in p.read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#")
        }
        if not found:  # an operator who gives a key file means to require keys
            raise ConfigError(f"API key file {p} holds no keys (only blank lines or comments)")
        keys |= found
    return keys


def bearer_accepted(headers: Mapping[str, str], keys: Collection[str]) -> bool:
    """Whether the request's ``Authorization: Bearer`` token is one of ``keys`` (compared in
    constant time). The caller decides whether keys are required at all."""
    auth = headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else ""
    return any(hmac.compare_digest(token.encode(), k.encode()) for k in keys)
