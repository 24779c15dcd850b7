"""A lean JSON client for the non-streaming calls to OpenAI-compatible endpoints.

The official ``openai`` client validates every request and builds typed objects from every reply;
on a small CPU that costs a few milliseconds per call, more than an instant local upstream takes
to answer, and a routed request pays it once per sample. :class:`JSONClient` does the same HTTP
exchange with a plain ``httpx`` client: the request body as JSON, the reply as a dict. Its faults
are raised as the ``openai`` client's own exception types (:class:`openai.APITimeoutError`,
:class:`openai.APIConnectionError`, :class:`openai.RateLimitError`, :class:`openai.APIStatusError`,
the response kept for its ``Retry-After`` headers), so retrying and the fault classification of
:mod:`avengers.transport.backends` treat both clients alike. Streaming stays with the official client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

_loads: Callable[[bytes], Any]
_dumps: Callable[[Any], bytes]
try:  # optional: several times faster on large replies
    import orjson

    _loads = orjson.loads

    def _dumps(body: Any) -> bytes:
        return orjson.dumps(body)

except ImportError:  # pragma: no cover - the standard library path
    _loads = json.loads

    def _dumps(body: Any) -> bytes:
        return json.dumps(body, ensure_ascii=False).encode()


class BadReply(Exception):
    """A 2xx reply whose body is not a JSON object."""


class UnsendableRequest(Exception):
    """A request body that cannot be written as JSON."""


class JSONClient:
    """POSTs JSON to one endpoint over a keep-alive connection pool (of the running event loop).
    ``base_url`` is the endpoint's (``.../v1``); the API key goes in a bearer header."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float, max_connections: int
    ) -> None:
        self.base_url = base_url.rstrip("/")
        n = max(1, max_connections)
        self._http = httpx.AsyncClient(
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        )

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON object the endpoint answers ``body`` with at ``path`` (e.g.
        ``/chat/completions``). ``extra_body`` entries are merged into the body, as the official
        client does."""
        import openai

        payload = dict(body)
        extra = payload.pop("extra_body", None)
        if extra:
            payload.update(extra)
        url = self.base_url + path
        try:
            content = _dumps(payload)
        except TypeError as e:
            raise UnsendableRequest(f"request is not JSON-serialisable: {e}") from None
        try:
            resp = await self._http.post(url, content=content)
        except httpx.TimeoutException as e:
            raise openai.APITimeoutError(request=e.request) from None
        except httpx.TransportError as e:
            raise openai.APIConnectionError(request=e.request) from None
        if resp.status_code >= 400:
            raise status_error(resp)
        try:
            data = _loads(resp.content)
        except ValueError:
            raise BadReply("reply is not JSON") from None
        if not isinstance(data, dict):
            raise BadReply("reply is not a JSON object")
        return data

    async def aclose(self) -> None:
        await self._http.aclose()


def status_error(resp: httpx.Response) -> Exception:
    """The ``openai`` client's exception for an error status (429: rate limited)."""
    import openai

    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    text = f"HTTP {resp.status_code}" + (f": {message}" if isinstance(message, str) else "")
    if resp.status_code == 429:
        return openai.RateLimitError(text, response=resp, body=body)
    return openai.APIStatusError(text, response=resp, body=body)


__all__ = ["BadReply", "JSONClient", "UnsendableRequest", "status_error"]
