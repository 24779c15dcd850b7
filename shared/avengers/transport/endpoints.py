"""Where each candidate model is served: a declarative, validated endpoint config.

An endpoint file maps candidate model names (as in the router's training data) to
OpenAI-compatible servers. YAML, TOML or JSON, for example::

    defaults:
      max_concurrency: 4
      timeout: 60
    endpoints:
      smollm2-135m:
        base_url: http://127.0.0.1:8081/v1
        model: smollm2
      gpt-4o-mini:
        base_url: https://api.openai.com/v1
        model: gpt-4o-mini
        api_key_env: OPENAI_API_KEY     # the *name* of an environment variable, never the key
        input_price: 0.15               # USD per million prompt tokens
        output_price: 0.60

API keys are read from the environment when a client is created; they are never stored in an
``Endpoint``, printed, logged, or written into a router artifact.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from .capabilities import Capabilities

_KEY_LIKE = re.compile(r"^(sk-|hf_|gsk_|xai-|AIza)|^[A-Za-z0-9_\-]{32,}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Endpoint:
    """One candidate model behind an OpenAI-compatible ``/v1`` API."""

    name: str
    """Candidate model name, as the router knows it."""
    base_url: str
    """Base URL of the OpenAI-compatible API, e.g. ``http://127.0.0.1:8080/v1``."""
    model: str | None = None
    """Model id sent to the server (defaults to ``name``)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (None: no key needed)."""
    max_concurrency: int = 4
    """Most requests in flight to this endpoint at once."""
    timeout: float = 60.0
    """Seconds before one request is abandoned."""
    max_retries: int = 2
    """Retries (with exponential backoff) on connection errors, 408/409/429 and 5xx."""
    input_price: float | None = None
    """USD per million prompt tokens (for the cost account; None with ``output_price`` None:
    costs unknown, reported as such rather than as zero)."""
    output_price: float | None = None
    """USD per million completion tokens (None counts 0 when ``input_price`` is set)."""
    max_tokens: int | None = None
    """Default completion length cap for this model."""
    context_window: int | None = None
    """Context length in tokens, if known (integrations report the smallest)."""
    system_prompt: str | None = None
    """Prepended as a system message (merged into the first user turn if ``system_role`` is
    False, for chat templates such as Gemma's that have no system role)."""
    system_role: bool = True
    """Whether the model's chat template accepts a ``system`` message."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra JSON fields sent with every request (server-specific options)."""
    api: str = "chat"
    """``chat`` (``/v1/chat/completions``) or ``completions`` (``/v1/completions`` with the
    conversation rendered by ``prompt_template``: for base models without a chat template)."""
    prompt_template: str = "Question: {prompt}\nAnswer:"
    """With ``api: completions``: how one user turn is rendered; ``{prompt}`` is its text.
    Earlier turns are rendered the same way followed by their answers; a system prompt goes
    first on its own line."""
    stop: tuple[str, ...] | None = None
    """Stop sequences sent with every request (defaults to a blank line and "Question:" for
    ``api: completions``)."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    """What the model supports beyond plain text (tool calling, JSON mode, JSON schema, ...):
    a mapping of flags or a list of names (see :mod:`avengers.transport.capabilities`; safe defaults)."""

    def __post_init__(self) -> None:
        where = f"endpoint {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("an endpoint needs a non-empty name")
        if not isinstance(self.base_url, str) or not re.match(r"^https?://[^/\s]+", self.base_url):
            raise ConfigError(f"{where}: base_url must be an http(s) URL, got {self.base_url!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ConfigError(f"{where}: model must be a non-empty string")
        if self.api_key_env is not None and (
            not isinstance(self.api_key_env, str) or not _ENV_NAME.match(self.api_key_env)
        ):
            hint = (
                " (it looks like a key itself: put the key in an environment variable and "
                "give that variable's name)"
                if isinstance(self.api_key_env, str) and _KEY_LIKE.search(self.api_key_env)
                else ""
            )
            raise ConfigError(f"{where}: api_key_env must name an environment variable{hint}")
        for name in ("max_concurrency", "max_retries"):
            v = getattr(self, name)
            if (
                not isinstance(v, int)
                or isinstance(v, bool)
                or v < (1 if name == "max_concurrency" else 0)
            ):
                raise ConfigError(
                    f"{where}: {name} must be a whole number >= "
                    f"{1 if name == 'max_concurrency' else 0}, got {v!r}"
                )
        for name in ("timeout", "input_price", "output_price"):
            v = getattr(self, name)
            if v is None and name != "timeout":
                continue
            if (
                not isinstance(v, (int, float))
                or isinstance(v, bool)
                or not math.isfinite(v)
                or v < 0
            ):
                raise ConfigError(f"{where}: {name} must be a number >= 0, got {v!r}")
        if self.timeout == 0:
            raise ConfigError(f"{where}: timeout must be > 0")
        for name in ("max_tokens", "context_window"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{where}: {name} must be a positive whole number, got {v!r}")
        if not isinstance(self.extra_body, dict):
            raise ConfigError(f"{where}: extra_body must be a mapping")
        if self.api not in ("chat", "completions"):
            raise ConfigError(f"{where}: api must be 'chat' or 'completions', got {self.api!r}")
        if "{prompt}" not in str(self.prompt_template):
            raise ConfigError(f"{where}: prompt_template must contain {{prompt}}")
        if self.stop is not None:
            if isinstance(self.stop, str) or not all(isinstance(x, str) for x in self.stop):
                raise ConfigError(f"{where}: stop must be a list of strings")
            object.__setattr__(self, "stop", tuple(self.stop))
        caps = Capabilities.of(self.capabilities, where)
        if self.api == "completions" and caps.tools:
            raise ConfigError(f"{where}: tool calling needs api 'chat' (completions have no tools)")
        object.__setattr__(self, "capabilities", caps)

    @property
    def model_id(self) -> str:
        return self.model or self.name

    def api_key(self) -> str:
        """The key from the environment (a placeholder when none is configured, as local
        servers accept any). Raises ConfigError if the named variable is unset."""
        if self.api_key_env is None:
            return "not-needed"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"endpoint {self.name!r}: environment variable {self.api_key_env} is not set"
            )
        return key

    @property
    def priced(self) -> bool:
        """Whether a price is configured (else the cost of a call is unknown)."""
        return self.input_price is not None or self.output_price is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for one call with this many tokens; None when the endpoint has no prices."""
        if not self.priced:
            return None
        pin, pout = self.input_price or 0.0, self.output_price or 0.0
        return round_cost((prompt_tokens * pin + completion_tokens * pout) / 1e6)

    def to_dict(self) -> dict[str, Any]:
        """Settings as plain data (holds the key's variable name, never the key)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["capabilities"] = self.capabilities.to_dict()
        return d


def round_cost(usd: float) -> float:
    """A cost to 10 significant digits: exact for any price list, without the float noise of
    sums and quotients (``1.6000000000000003e-05`` is ``1.6e-05``)."""
    return float(f"{usd:.10g}")


_FIELDS = {f.name for f in fields(Endpoint)}


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"endpoint file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # pragma: no cover - Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
    except Exception as e:  # parse errors of three libraries; report them alike
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {e}") from None
    raise ConfigError(f"{path}: unknown endpoint file type {suffix!r} (use .yaml, .toml or .json)")


def endpoints_from_mapping(data: Any, *, source: str = "endpoint config") -> dict[str, Endpoint]:
    """Build endpoints from parsed config data: ``{"defaults": {...}, "endpoints": {name: {...}}}``
    or a list of entries with a ``name``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with an 'endpoints' section")
    unknown_top = set(data) - {"defaults", "endpoints"}
    if unknown_top:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown_top)}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{source}: 'defaults' must be a mapping")
    raw = data.get("endpoints")
    if isinstance(raw, list):
        entries = []
        for i, e in enumerate(raw):
            if not isinstance(e, Mapping) or "name" not in e:
                raise ConfigError(f"{source}: endpoints[{i}] needs a 'name'")
            entries.append((str(e["name"]), {k: v for k, v in e.items() if k != "name"}))
    elif isinstance(raw, Mapping):
        entries = [(str(k), v) for k, v in raw.items()]
    else:
        raise ConfigError(f"{source}: 'endpoints' must be a mapping of model name to settings")
    if not entries:
        raise ConfigError(f"{source}: no endpoints defined")
    out: dict[str, Endpoint] = {}
    for name, settings in entries:
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{source}: endpoint {name!r} must be a mapping of settings")
        merged = {**defaults, **settings}
        if "api_key" in merged:
            raise ConfigError(
                f"{source}: endpoint {name!r} has an 'api_key': keys are not accepted in config "
                "files; set api_key_env to the name of an environment variable instead"
            )
        unknown = set(merged) - _FIELDS
        if unknown:
            raise ConfigError(
                f"{source}: endpoint {name!r}: unknown settings {sorted(unknown)} "
                f"(known: {sorted(_FIELDS - {'name'})})"
            )
        if "base_url" not in merged:
            raise ConfigError(f"{source}: endpoint {name!r} needs a base_url")
        if name in out:
            raise ConfigError(f"{source}: endpoint {name!r} defined twice")
        try:
            out[name] = Endpoint(name=name, **merged)
        except TypeError as e:
            raise ConfigError(f"{source}: endpoint {name!r}: {e}") from None
    return out


def load_endpoints(
    source: str | Path | Mapping[str, Any] | list[Endpoint] | Mapping[str, Endpoint],
) -> dict[str, Endpoint]:
    """Endpoints from a YAML/TOML/JSON file, parsed config data, or ready ``Endpoint`` objects."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        return endpoints_from_mapping(_read_file(path), source=str(path))
    if isinstance(source, list):
        if not all(isinstance(e, Endpoint) for e in source):
            raise ConfigError("a list of endpoints must hold Endpoint objects")
        out = {e.name: e for e in source}
        if len(out) != len(source):
            raise ConfigError("duplicate endpoint names in the list")
        return out
    if isinstance(source, Mapping):
        if source and all(isinstance(v, Endpoint) for v in source.values()):
            return {k: replace(v, name=k) if v.name != k else v for k, v in source.items()}
        if "endpoints" not in source and all(isinstance(v, Mapping) for v in source.values()):
            return endpoints_from_mapping({"endpoints": source})  # {name: settings}
        return endpoints_from_mapping(source)
    raise ConfigError(f"cannot read endpoints from {type(source).__name__}")


def check_names(names: Iterable[str], models: Sequence[str], *, source: str = "endpoints") -> None:
    """Raise :class:`ConfigError` naming every endpoint in ``names`` that is not one of the
    router's ``models`` (such an endpoint is never routed to: most likely a typo), each with the
    closest router model when there is one (``qwen2.5-7b-instruc``: did you mean
    ``qwen2.5-7b-instruct``?)."""
    known = list(models)
    problems = []
    for name in names:
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"router models: {', '.join(known)}"
        problems.append(f"{name!r} ({hint})")
    if problems:
        raise ConfigError(
            f"{source}: no router model is named {'; '.join(problems)}; an endpoint must be named "
            "after the router model it serves"
        )
