"""One call to rate an answer, whichever way it was made: in this process by
:class:`~llama_index_avengers.Avengers`, or by an avengers server through ``OpenAILike``."""

from __future__ import annotations

from typing import Any

from avengers.stores import feedback as core

from .base import Avengers, response_id


def _server(llm: Any, api_key: str | None) -> tuple[str, str | None]:
    """The base URL and key to send feedback with: a URL given as is, or an ``OpenAILike``'s."""
    return core.client_server(
        llm,
        api_key,
        base_attr="api_base",
        key_attr="api_key",
        expected="the Avengers LLM that answered, an OpenAILike pointed at an avengers server",
    )


def send_feedback(
    llm: Any,
    response: Any,
    score: float,
    *,
    cost: float | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Rate ``response`` (a chat or completion response, or its id) with a score in [0, 1].

    ``llm`` is the LLM that answered: an :class:`Avengers` (the rating is applied to its router in
    this process), or an ``OpenAILike`` pointed at an avengers server, or that server's base URL
    (the rating is sent to its ``POST /v1/feedback``, with the client's API key unless
    ``api_key`` is given). Returns the accepted rating (as the server's reply: ``id``, ``seq``,
    ``model``, ``cluster``, ``score``); a refused one raises
    :class:`avengers.stores.feedback.FeedbackError` saying why."""
    rid = response_id(response)
    if isinstance(llm, Avengers):
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
    if isinstance(llm, Avengers):
        return core.rating_reply(await llm.afeedback(rid, score, cost=cost))
    base, key = _server(llm, api_key)
    return await core.arate_on_server(base, rid, score, cost=cost, api_key=key)
