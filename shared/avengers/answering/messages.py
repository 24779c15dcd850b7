"""Chat messages in the one form the core works with, and which of their text the router reads.

The core's message form is the OpenAI one: a mapping with a ``role`` (``system``, ``user``,
``assistant``, ``tool``) and a ``content`` that is a string or a list of content parts
(``{"type": "text", "text": ...}``). :func:`as_messages` turns a string or such a list into a
list of messages; :func:`content_text` turns any content into plain text. The LangChain and
LlamaIndex adapters convert their own message objects to this form and use the same functions.

The routing-text policy (:func:`routing_text`) decides which text of a conversation is embedded
and routed on. One policy serves the :class:`~avengers.answering.answer.Answerer` and both adapters:

* ``"last_user"`` (the default) -- the last user message. LangChain's ``human`` role counts as
  ``user``. A conversation without a user message is an error, never a silent empty route.
* ``"conversation"`` -- every message, one per line, as ``role: text``.
* ``"query"`` -- the question inside a retrieval prompt: the part of the last user message after
  its last ``Query:`` line and before ``Answer:`` (what LlamaIndex query engines send), or the
  whole last user message when it has no ``Query:`` line.
* a template -- a string holding ``{last_user}``, ``{conversation}`` or ``{query}``, each
  replaced by the text above.
* a function -- called with the messages; its result is the routing text. The adapters call it
  with their own message objects, so user functions keep reading the objects they know.

The old names still work: ``last_human`` for ``last_user`` (also as ``{last_human}`` in a
template) and ``full`` for ``conversation``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..exceptions import ConfigError

Message = Mapping[str, Any]
"""A chat message in the OpenAI form: ``{"role": ..., "content": ...}``."""

RoutingPolicy = str | Callable[[Sequence[Any]], str]
"""A policy name, a template, or a function of the messages (see the module docstring)."""

_ALIASES = {"last_human": "last_user", "full": "conversation"}
_ROLES = {"human": "user", "ai": "assistant"}


def content_text(content: Any) -> str:
    """The text of a message content: a string as it is, content parts' text joined by lines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") if isinstance(p, dict) else str(p) for p in content
        ).strip()
    return "" if content is None else str(content)


def role_of(message: Message) -> str:
    """A message's role in OpenAI terms (``human`` -> ``user``, ``ai`` -> ``assistant``)."""
    role = str(message.get("role", ""))
    return _ROLES.get(role, role)


def for_candidates(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as plain-text candidates take them: text content, and roles other than
    ``system``, ``user`` and ``assistant`` (tool results, say) shown as user turns."""
    out = []
    for m in messages:
        role = role_of(m)
        role = role if role in ("system", "user", "assistant") else "user"
        out.append({"role": role, "content": content_text(m.get("content"))})
    return out


def as_messages(query: str | Sequence[Message]) -> list[Message]:
    """A string becomes one user message; a list of messages is checked and copied."""
    if isinstance(query, str):
        if not query.strip():
            raise ConfigError("the query is empty")
        return [{"role": "user", "content": query}]
    msgs = list(query)
    if not msgs or not all(isinstance(m, Mapping) and "role" in m for m in msgs):
        raise ConfigError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    return msgs


def last_user_text(messages: Sequence[Message]) -> str:
    """The text of the last user message."""
    for m in reversed(messages):
        if role_of(m) == "user":
            return content_text(m.get("content"))
    raise ConfigError("no user message to route on")


def query_part(text: str) -> str:
    """The question inside a retrieval prompt: after the last ``Query:``, before ``Answer:``."""
    if "Query:" in text:
        text = text.rsplit("Query:", 1)[1].split("\nAnswer:", 1)[0]
    return text.strip()


def conversation_text(messages: Sequence[Message]) -> str:
    """Every message on its own line as ``role: text``."""
    return "\n".join(f"{role_of(m)}: {content_text(m.get('content'))}" for m in messages)


def query_text(messages: Sequence[Message]) -> str:
    """The question inside the last user message (see :func:`query_part`)."""
    return query_part(last_user_text(messages))


_POLICIES: dict[str, Callable[[Sequence[Message]], str]] = {
    "last_user": last_user_text,
    "conversation": conversation_text,
    "query": query_text,
}


def routing_text(
    messages: Sequence[Message], policy: RoutingPolicy = "last_user", *, native: Any = None
) -> str:
    """The text the router reads from ``messages`` under ``policy`` (see the module docstring).
    A function policy is called with ``native`` when given (an adapter's own message objects),
    else with ``messages``."""
    if callable(policy):
        return str(policy(messages if native is None else native))
    if not isinstance(policy, str):
        raise _bad_policy(policy)
    name = _ALIASES.get(policy, policy)
    if name in _POLICIES:
        return _POLICIES[name](messages)
    used = [n for n in (*_POLICIES, *_ALIASES) if f"{{{n}}}" in policy]
    if not used:
        raise _bad_policy(policy)
    text = policy
    for n in used:
        text = text.replace(f"{{{n}}}", _POLICIES[_ALIASES.get(n, n)](messages))
    return text


def _bad_policy(policy: Any) -> ConfigError:
    return ConfigError(
        "routing must be 'last_user', 'conversation', 'query', a template with {last_user}, "
        f"{{conversation}} or {{query}}, or a function of the messages; got {policy!r}"
    )
