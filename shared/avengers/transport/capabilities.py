"""What each candidate endpoint can do, what a request needs, and which candidates can serve it.

An endpoint declares its capabilities in the endpoints file (``capabilities:`` as a mapping of
flags, or a list of the names that are true)::

    endpoints:
      qwen-tools:
        base_url: http://127.0.0.1:8081/v1
        capabilities: {tools: true, json_schema: true}
      gemma-base:
        base_url: http://127.0.0.1:8082/v1
        capabilities: [json_schema]

Defaults are safe: nothing that changes the wire format is assumed. ``tools``, ``json_mode``
and ``json_schema`` are off; ``tool_choice`` and ``parallel_tool_calls`` follow ``tools`` and
``json_mode`` follows ``json_schema`` unless set; ``vision`` (image content parts) is on, since
image parts were always forwarded as they came.

A request that needs a capability is routed only among the candidates that have it, in the
router's order; the result lists the others under ``excluded`` with the reason. When no
candidate has what the request needs, :class:`CapabilityError` says so (the server: HTTP 400).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ..exceptions import ConfigError

CAPABILITIES: tuple[str, ...] = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "json_mode",
    "json_schema",
    "vision",
)
"""Every capability flag an endpoint can declare."""

_DESCRIBE = {
    "tools": "tool calling",
    "tool_choice": "a forced tool choice",
    "parallel_tool_calls": "the parallel_tool_calls setting",
    "json_mode": "JSON mode (response_format json_object)",
    "json_schema": "JSON-schema output (response_format json_schema)",
    "vision": "image inputs",
}


def _bare(description: str) -> str:
    """A description without its article, to follow "no" ("no forced tool choice")."""
    for article in ("a ", "the "):
        if description.startswith(article):
            return description[len(article) :]
    return description


class CapabilityError(ConfigError):
    """No candidate can serve a request: it needs capabilities none of them declares.
    ``needs`` lists what the request needs; ``excluded`` maps each candidate to the reason."""

    def __init__(self, needs: Sequence[str], excluded: Mapping[str, str]) -> None:
        lines = [
            "no candidate model can serve this request: it needs "
            + ", ".join(_DESCRIBE.get(n, n) for n in needs)
        ]
        lines += [f"  - {m}: {why}" for m, why in excluded.items()]
        super().__init__("\n".join(lines))
        self.needs = list(needs)
        self.excluded = dict(excluded)


@dataclass(frozen=True)
class Capabilities:
    """What one endpoint supports (see the module docstring for the defaults)."""

    tools: bool = False
    """Accepts ``tools`` and answers with OpenAI-style ``tool_calls``."""
    tool_choice: bool | None = None
    """Honours ``tool_choice`` ``required`` or a named function (None: same as ``tools``)."""
    parallel_tool_calls: bool | None = None
    """Accepts the ``parallel_tool_calls`` setting (None: same as ``tools``)."""
    json_mode: bool | None = None
    """Honours ``response_format: {"type": "json_object"}`` (None: same as ``json_schema``)."""
    json_schema: bool = False
    """Honours ``response_format: {"type": "json_schema", ...}`` (llama.cpp does, by grammar)."""
    vision: bool = True
    """Accepts image content parts (on by default: they were always forwarded)."""
    json_schema_style: str = "openai"
    """How a JSON schema is asked for: ``openai`` (``{"type": "json_schema", "json_schema":
    {...}}``, as OpenAI, vLLM and llama.cpp's ``llama-server`` take it) or ``json_object``
    (``{"type": "json_object", "schema": {...}}``, as llama-cpp-python's server takes it)."""

    def __post_init__(self) -> None:
        if self.json_schema_style not in ("openai", "json_object"):
            raise ConfigError(
                "capability json_schema_style must be 'openai' or 'json_object', "
                f"got {self.json_schema_style!r}"
            )
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "json_schema_style" and v is not None and not isinstance(v, bool):
                raise ConfigError(f"capability {f.name} must be true or false, got {v!r}")

    def has(self, name: str) -> bool:
        """Whether the endpoint has capability ``name`` (inherited flags resolved)."""
        if name in ("tool_choice", "parallel_tool_calls"):
            v = getattr(self, name)
            return self.tools if v is None else bool(v and self.tools)
        if name == "json_mode":
            return self.json_schema if self.json_mode is None else self.json_mode
        return bool(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """Every flag, resolved."""
        d: dict[str, Any] = {n: self.has(n) for n in CAPABILITIES}
        if self.json_schema_style != "openai":
            d["json_schema_style"] = self.json_schema_style
        return d

    @classmethod
    def of(cls, value: Any, where: str = "endpoint") -> Capabilities:
        """From a :class:`Capabilities`, a mapping of flags, a list of names, or None."""
        if value is None:
            return cls()
        if isinstance(value, Capabilities):
            return value
        if isinstance(value, (list, tuple, set, frozenset)):
            value = dict.fromkeys(value, True)
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where}: capabilities must be a mapping of flags or a list of names, "
                f"got {value!r}"
            )
        unknown = sorted(set(map(str, value)) - {*CAPABILITIES, "json_schema_style"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown capabilities {unknown} (known: {', '.join(CAPABILITIES)})"
            )
        try:
            return cls(**{str(k): v for k, v in value.items()})
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def wire_options(caps: Capabilities, options: Mapping[str, Any]) -> dict[str, Any]:
    """The request options as this endpoint takes them (the JSON-schema request style)."""
    out = dict(options)
    fmt = out.get("response_format")
    styled = caps.json_schema_style == "json_object"
    if styled and isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        out["response_format"] = {"type": "json_object", "schema": schema}
    return out


def _has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") in ("image_url", "image"):
                    return True
    return False


def request_needs(
    messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any] | None = None
) -> list[str]:
    """The capabilities a request needs: from its tool and response-format options (see
    :func:`avengers.answering.toolcalls.request_options`) and its messages (image parts need ``vision``).
    Tool results and assistant tool calls in the history need nothing: candidates without
    tool calling see them as plain text turns."""
    opts = options or {}
    needs: list[str] = []
    if opts.get("tools"):
        needs.append("tools")
        choice = opts.get("tool_choice")
        if choice is not None and choice not in ("auto", "none"):
            needs.append("tool_choice")
        if opts.get("parallel_tool_calls") is not None:
            needs.append("parallel_tool_calls")
    fmt = opts.get("response_format")
    if isinstance(fmt, Mapping):
        kind = fmt.get("type")
        if kind == "json_object":
            needs.append("json_mode")
        elif kind == "json_schema":
            needs.append("json_schema")
    if _has_images(messages):
        needs.append("vision")
    return needs


Lookup = Callable[[str], "Capabilities | None"]
"""A backend's capabilities for a model (None: the backend declares none)."""


def capabilities_of(backend: Any) -> Lookup:
    """How to read a backend's capabilities: its ``capabilities(model)`` method if it has one
    (:class:`~avengers.transport.backends.OpenAIBackend` reads the endpoints file); otherwise the
    defaults (plain text and images only)."""
    method = getattr(backend, "capabilities", None)
    if callable(method):
        return method
    return lambda model: None


def split_capable(
    order: Sequence[str], needs: Sequence[str], lookup: Lookup
) -> tuple[list[str], dict[str, str]]:
    """The candidates of ``order`` that have every capability in ``needs`` (order kept), and
    the others, each with the reason it was excluded."""
    if not needs:
        return list(order), {}
    kept: list[str] = []
    excluded: dict[str, str] = {}
    for model in order:
        caps = lookup(model) or Capabilities()
        missing = [n for n in needs if not caps.has(n)]
        if missing:
            excluded[model] = "no " + ", no ".join(_bare(_DESCRIBE.get(n, n)) for n in missing)
        else:
            kept.append(model)
    return kept, excluded


__all__ = [
    "CAPABILITIES",
    "Capabilities",
    "CapabilityError",
    "capabilities_of",
    "request_needs",
    "split_capable",
]
