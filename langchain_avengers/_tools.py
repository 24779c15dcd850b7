"""Tool calling and structured output for :class:`~langchain_avengers.ChatAvengers`: OpenAI tool
definitions from LangChain tools, tool calls on AI messages, and ``with_structured_output``'s
three methods. The voting over tool calls and JSON lives in :mod:`avengers.answering.toolcalls`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Literal

from avengers.exceptions import ConfigError
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
    make_invalid_tool_call,
    parse_tool_call,
)
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

StructuredMethod = Literal["function_calling", "json_schema", "json_mode"]


def openai_tools(
    tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
    strict: bool | None = None,
) -> list[dict[str, Any]]:
    """LangChain tools (functions, pydantic models, ``BaseTool``, dicts) as OpenAI tools."""
    return [convert_to_openai_tool(t, strict=strict) for t in tools]


def openai_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    """LangChain's ``tool_choice`` in OpenAI's form: ``any``/``True`` -> ``required`` (or the one
    tool), a tool name -> that function, ``auto``/``none``/``required``/a dict as they are."""
    if choice is None or choice is False:
        return None
    if choice is True:
        choice = tools[0]["function"]["name"] if len(tools) == 1 else "required"
    if choice == "any":
        return "required"
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    if isinstance(choice, (str, dict)):
        return choice
    raise ConfigError(f"unsupported tool_choice {choice!r}")


def has_tool_turns(messages: Sequence[BaseMessage]) -> bool:
    return any(
        isinstance(m, ToolMessage) or (isinstance(m, AIMessage) and bool(m.tool_calls))
        for m in messages
    )


def tool_calls_of(raw: Sequence[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """OpenAI wire tool calls as LangChain ``tool_calls`` and ``invalid_tool_calls``."""
    calls, invalid = [], []
    for c in raw:
        try:
            parsed = parse_tool_call(c, return_id=True)
        except Exception as e:  # malformed arguments are kept as invalid calls
            invalid.append(make_invalid_tool_call(c, str(e)))
            continue
        if parsed:
            calls.append(parsed)
    return calls, invalid


def tool_call_chunks(raw: Sequence[dict[str, Any]]) -> list[Any]:
    """OpenAI wire tool calls as the tool-call chunks of one streamed message chunk."""
    return [
        tool_call_chunk(
            name=c["function"]["name"],
            args=c["function"].get("arguments") or "",
            id=c.get("id"),
            index=i,
        )
        for i, c in enumerate(raw)
    ]


def structured(
    model: Any,
    schema: Any,
    *,
    method: StructuredMethod = "function_calling",
    include_raw: bool = False,
    strict: bool | None = None,
) -> Runnable[LanguageModelInput, Any]:
    """``with_structured_output`` for a chat model with OpenAI-style ``bind_tools`` and
    ``response_format``: function calling (a forced tool call), JSON schema or JSON mode."""
    if schema is None and method != "json_mode":
        raise ConfigError(f"with_structured_output(method={method!r}) needs a schema")
    is_model = isinstance(schema, type) and is_basemodel_subclass(schema)
    fmt = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
    parser: Runnable[Any, Any]
    if method == "function_calling":
        name = convert_to_openai_tool(schema)["function"]["name"]
        llm = model.bind_tools(
            [schema], tool_choice=name, strict=strict, ls_structured_output_format=fmt
        )
        parser = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)
            if is_model
            else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        )
    elif method in ("json_schema", "json_mode"):
        if method == "json_schema":
            tool = convert_to_openai_tool(schema)["function"]
            js: dict[str, Any] = {"name": tool["name"], "schema": convert_to_json_schema(schema)}
            if strict is not None:
                js["strict"] = strict
            response_format: dict[str, Any] = {"type": "json_schema", "json_schema": js}
        else:
            response_format = {"type": "json_object"}
        llm = model.bind(response_format=response_format, ls_structured_output_format=fmt)
        parser = PydanticOutputParser(pydantic_object=schema) if is_model else JsonOutputParser()
    else:
        raise ConfigError(
            f"method must be 'function_calling', 'json_schema' or 'json_mode', got {method!r}"
        )
    if not include_raw:
        return llm | parser
    parsed = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


def ai_message(text: str, raw_calls: Sequence[dict[str, Any]], **fields: Any) -> AIMessage:
    calls, invalid = tool_calls_of(raw_calls)
    return AIMessage(content=text, tool_calls=calls, invalid_tool_calls=invalid, **fields)


def last_chunk(raw_calls: Sequence[dict[str, Any]], **fields: Any) -> AIMessageChunk:
    return AIMessageChunk(content="", tool_call_chunks=tool_call_chunks(raw_calls), **fields)


__all__ = ["openai_tool_choice", "openai_tools", "structured"]
