"""Tool calling for the LlamaIndex :class:`~llama_index_avengers.Avengers` LLM: LlamaIndex tools as
OpenAI tools, LlamaIndex messages with tool calls and tool results in the OpenAI form, and tool
calls read back from a response. The voting over tool calls lives in :mod:`avengers.answering.toolcalls`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from avengers.answering.toolcalls import tool_call
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms.llm import ToolSelection


def openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """LlamaIndex tools as OpenAI tool definitions."""
    return [t.metadata.to_openai_tool(skip_length_check=True) for t in tools]


def openai_tool_choice(
    tool_choice: Any, tool_required: bool, tool_names: Sequence[str] = ()
) -> Any:
    """``tool_choice`` in OpenAI's form: a tool name -> that function; ``tool_required`` with no
    choice -> that one function when there is a single tool (the same request, and servers such
    as llama.cpp force a call only when the function is named), else ``required``."""
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": tool_choice}}
    if tool_choice is not None:
        return tool_choice
    if not tool_required:
        return None
    if len(tool_names) == 1:
        return {"type": "function", "function": {"name": tool_names[0]}}
    return "required"


def _calls_of(message: ChatMessage) -> list[dict[str, Any]]:
    """A message's tool calls in the OpenAI wire form (from blocks or ``additional_kwargs``)."""
    out = []
    for b in message.blocks:
        if isinstance(b, ToolCallBlock):
            args = b.tool_kwargs
            out.append(
                tool_call(
                    b.tool_name, args if isinstance(args, str) else dict(args), b.tool_call_id
                )
            )
    if out:
        return out
    for c in message.additional_kwargs.get("tool_calls") or ():
        fn = c.get("function", {}) if isinstance(c, dict) else getattr(c, "function", None)
        name = fn.get("name") if isinstance(fn, dict) else getattr(fn, "name", None)
        raw = fn.get("arguments") if isinstance(fn, dict) else getattr(fn, "arguments", None)
        cid = c.get("id") if isinstance(c, dict) else getattr(c, "id", None)
        if name:
            out.append(tool_call(name, raw if isinstance(raw, str) and raw else "{}", cid))
    return out


def has_tool_turns(messages: Sequence[ChatMessage]) -> bool:
    return any(m.role == MessageRole.TOOL or _calls_of(m) for m in messages)


def to_openai_with_tools(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex messages in the OpenAI form, with assistant tool calls and tool results."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.role.value
        if role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": m.additional_kwargs.get("tool_call_id", ""),
                    "name": m.additional_kwargs.get("name"),
                    "content": m.content or "",
                }
            )
            continue
        d: dict[str, Any] = {
            "role": role if role in ("system", "user", "assistant") else "user",
            "content": m.content or "",
        }
        calls = _calls_of(m) if role == "assistant" else []
        if calls:
            d["tool_calls"] = calls
            d["content"] = m.content or None
        out.append(d)
    return out


def response_message(text: str, raw_calls: Sequence[dict[str, Any]]) -> ChatMessage:
    """The assistant message of a response: its text and its tool calls as ``ToolCallBlock``s
    (and, for older readers, ``additional_kwargs["tool_calls"]`` in the OpenAI form)."""
    if not raw_calls:
        return ChatMessage(role=MessageRole.ASSISTANT, content=text)
    blocks: list[Any] = [TextBlock(text=text)] if text else []
    for c in raw_calls:
        fn = c["function"]
        try:
            args: dict[str, Any] | str = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = fn.get("arguments") or ""
        blocks.append(
            ToolCallBlock(tool_call_id=c.get("id"), tool_name=fn["name"], tool_kwargs=args)
        )
    return ChatMessage(
        role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs={"tool_calls": list(raw_calls)}
    )


def tool_selections(response: ChatResponse, error_on_no_tool_call: bool) -> list[ToolSelection]:
    """The tool calls of a response as LlamaIndex ``ToolSelection``s (arguments that do not parse
    become ``{}``, as LlamaIndex's own OpenAI LLM does)."""
    out = []
    for c in _calls_of(response.message):
        try:
            kwargs = json.loads(c["function"]["arguments"] or "{}")
        except ValueError:
            kwargs = {}
        out.append(
            ToolSelection(
                tool_id=c.get("id") or "",
                tool_name=c["function"]["name"],
                tool_kwargs=kwargs if isinstance(kwargs, dict) else {},
            )
        )
    if not out and error_on_no_tool_call:
        raise ValueError("Expected at least one tool call, but got 0 tool calls.")
    return out
