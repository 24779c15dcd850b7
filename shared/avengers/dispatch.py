"""Former name of :mod:`avengers.backends`, kept so existing imports keep working."""

from .backends import (
    Backend,
    CallError,
    Completion,
    Message,
    ObjectBackend,
    OpenAIBackend,
    prepare_messages,
    render_prompt,
)

__all__ = [
    "Backend",
    "CallError",
    "Completion",
    "Message",
    "ObjectBackend",
    "OpenAIBackend",
    "prepare_messages",
    "render_prompt",
]
