"""The HTTP protocol ``avengers serve`` runs under uvicorn: uvicorn's own, with the size of a
request's head (request line and headers) bounded.

uvicorn's C parser (httptools) keeps no limit on header size: a client could send a 64 MB
``X-Conversation-Id`` and the server would hold all of it before any check ran. Here a request
whose head grows past :data:`DEFAULT_MAX_HEAD_BYTES` is answered ``431`` in the OpenAI error
shape and its connection closed, after reading no more than that (plus one network read).
Without httptools, uvicorn's pure-Python parser (h11) is bounded by its own setting instead,
which :func:`uvicorn_settings` gives.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
"""The largest request head (request line and all headers) the server reads: several times what
browsers and OpenAI clients send, far below what would cost the server memory."""

_BODY = json.dumps(
    {
        "error": {
            "message": f"request headers larger than {DEFAULT_MAX_HEAD_BYTES} bytes",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_header_fields_too_large",
        }
    }
).encode()
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is part of the serve extra
    BoundedHeadProtocol: type | None = None
else:

    class _BoundedHeadProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol counting the bytes of each request's head as they
        arrive; past :data:`DEFAULT_MAX_HEAD_BYTES`, a 431 and the connection closed. (At module
        level: uvicorn hands it to each worker process by name.)"""

        max_head_bytes = DEFAULT_MAX_HEAD_BYTES

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # still inside the head after this read (a head that ended in it reset the count)
            if self._in_head and self._head_bytes > self.max_head_bytes:
                transport = self.transport
                if transport is not None and not transport.is_closing():
                    transport.write(_REFUSAL)
                    transport.close()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes = True, 0

    BoundedHeadProtocol = _BoundedHeadProtocol


def uvicorn_settings() -> dict[str, Any]:
    """The ``uvicorn.run`` settings that bound the request head, whichever parser runs."""
    out: dict[str, Any] = {"h11_max_incomplete_event_size": DEFAULT_MAX_HEAD_BYTES}
    if BoundedHeadProtocol is not None:
        out["http"] = BoundedHeadProtocol
    return out
