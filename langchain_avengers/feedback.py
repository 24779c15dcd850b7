"""One call to rate an answer, whichever way it was made: in this process by
:class:`~langchain_avengers.ChatAvengers`, or by an avengers server through ``ChatOpenAI``."""

from __future__ import annotations

from typing import Any

from avengers.stores import feedback as core

from ._core import response_id
from .chat_models import ChatAvengers


def _server(llm: Any, api_key: str | None) -> tuple[str, str | None]:
    """The base URL and key to send feedback with: a URL given as is, or a ``ChatOpenAI``'s."""
    return core.client_server(
        llm,
        api_key,
        base_attr="openai_api_base",
        key_attr="openai_api_key",
        expected="the ChatAvengers that answered, a ChatOpenAI pointed at an avengers server",
    )


def send_feedback(
    llm: Any,
    response: Any,
    score: float,
    *,
    cost: float | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Rate ``response`` (a message a model returned, or its id) with a score in [0, 1].

    ``llm`` is the model that answered: a :class:`ChatAvengers` (the rating is applied to its
    router in this process), or a ``ChatOpenAI`` pointed at an avengers server, or that server's
    base URL (the rating is sent to its ``POST /v1/feedback``, with the client's API key unless
    ``api_key`` is given). Returns the accepted rating (as the server's reply: ``id``, ``seq``,
    ``model``, ``cluster``, ``score``); a refused one raises
    :class:`avengers.stores.feedback.FeedbackError` saying why (unknown or already rated id, score out
    of range)."""
    rid = response_id(response)
    if isinstance(llm, ChatAvengers):
        return core.rating_reply(llm.feedback(rid, score, cost=cost))
    base, key = _server(llm, api_key)
    return core.rate_on_server(base, rid, score, cost=cost, api_key=key)


async def asend_feedback(
    llm: Any,
    response: Any,
    score: float,
    *,
    cost: float | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Async twin of :func:`send_feedback`."""
    rid = response_id(response)
    if isinstance(llm, ChatAvengers):
        return core.rating_reply(await llm.afeedback(rid, score, cost=cost))
    base, key = _server(llm, api_key)
    return await core.arate_on_server(base, rid, score, cost=cost, api_key=key)
