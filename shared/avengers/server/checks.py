"""Checks on request text before any work starts: every string in the body (messages, prompt,
model name, stop sequences, keys) must be encodable as UTF-8, and the body nested at most
:data:`~.wire.MAX_JSON_DEPTH` deep. :func:`~.wire.read_json` runs them on every body it reads
(completions, ``/v1/route``, ``/v1/feedback``); they live in :mod:`.wire` with the rest of the
request parsing and are named here for callers that check a body of their own."""

from __future__ import annotations

from .wire import MAX_JSON_DEPTH, check_body_text

__all__ = ["MAX_JSON_DEPTH", "check_body_text"]
