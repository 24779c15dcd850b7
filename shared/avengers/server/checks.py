"""Checks on request text before any work starts: every string in the body (messages, prompt,
model name, stop sequences, keys) must be encodable as UTF-8. JSON may carry a lone surrogate
(``"\\ud800"``); such text cannot be embedded, sent upstream or echoed in an error, so the request
gets a 400 naming the offending field, and requests batched with it are unaffected."""

from __future__ import annotations

from typing import Any

from ..embedders import InvalidTextError, check_texts
from .wire import BadRequest


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((f"{path}.{{key}}" if path else "{key}", str(k)))
            out += _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _strings(v, f"{path}[{i}]")
    return out


def check_body_text(body: dict[str, Any]) -> None:
    """Raise :class:`BadRequest` (400) naming the first string in ``body`` that is not valid
    text, e.g. ``messages[0].content``."""
    found = _strings(body, "")
    try:
        check_texts([s for _, s in found])
    except InvalidTextError as e:
        path = found[e.index][0]
        shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
        raise BadRequest(
            f"{shown} is not valid text: it cannot be encoded as UTF-8 "
            "(a lone surrogate such as \\ud800?)",
            shown,
        ) from None
