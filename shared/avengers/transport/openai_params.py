"""The OpenAI request parameters besides the conversation, and what each one does here: checked
as the OpenAI API checks it, then **passed** to the candidate that answers (every sample gets
it), **served** by the answering layer itself, or **refused** with a 400 that names it and says
why (it cannot be honoured under routing and voting). Nothing is dropped in silence: a parameter
the table does not know is refused too, as the OpenAI API refuses one.

:data:`PARAMETERS` is the table (docs/serve.md shows it, and a test keeps the two together);
:func:`check_parameters` applies it to a request body; :data:`UPSTREAM` names the parameters the
answering layer hands to candidates (see :func:`avengers.answering.toolcalls.split_options`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..exceptions import ConfigError

Handling = Literal["passed", "served", "refused"]


class ParameterError(ConfigError):
    """A request parameter that is malformed or cannot be honoured; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Parameter:
    """One request parameter: where it applies, how it is handled, and what it means here."""

    name: str
    handling: Handling
    meaning: str
    where: Literal["both", "chat", "legacy"] = "both"


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("model", "served", "a profile: `avengers` routes, `avengers-fast` routes with one "
              "sample, a candidate's name pins it (`GET /v1/models`)"),
    Parameter("messages", "served", "the conversation; the router reads the last user message",
              "chat"),
    Parameter("prompt", "served", "one string (or a list of one)", "legacy"),
    Parameter("stream", "served", "with one sample tokens stream as they come; with voting the "
              "winner comes in one piece once decided"),
    Parameter("stream_options", "served", "`include_usage` adds the usage chunk (summed over "
              "every sample)"),
    Parameter("temperature", "served", "every sample's temperature, [0, 2]; **0 draws one sample "
              "per model** (greedy decoding repeats itself)"),
    Parameter("max_tokens", "served", "every sample's length cap; a cut answer says "
              "`finish_reason: length`"),
    Parameter("max_completion_tokens", "served", "the same as `max_tokens`", "chat"),
    Parameter("stop", "passed", "up to 4 stop sequences, added to each endpoint's own, for "
              "every sample"),
    Parameter("n", "served", "1 only: one (voted) answer per request; ask for more samples with "
              "`n_samples`"),
    Parameter("seed", "passed", "every sample gets the same seed: with sampling that repeats "
              "itself, samples agree more and voting has less to do"),
    Parameter("top_p", "passed", "[0, 1], for every sample"),
    Parameter("frequency_penalty", "passed", "[-2, 2], for every sample"),
    Parameter("presence_penalty", "passed", "[-2, 2], for every sample"),
    Parameter("user", "passed", "the end user's id, sent with every sample"),
    Parameter("logit_bias", "passed", "token id -> bias in [-100, 100], only with a profile that "
              "pins a candidate: token ids belong to one tokenizer, and a routed request cannot "
              "know which candidate's (refused otherwise)"),
    Parameter("tools", "served", "offered to the candidates that can call tools; samples vote "
              "on their calls", "chat"),
    Parameter("tool_choice", "served", "`auto`, `none`, `required`, a named function, or "
              "`allowed_tools` (the tools offered narrow to the allowed ones)", "chat"),
    Parameter("parallel_tool_calls", "served", "to candidates that declare it", "chat"),
    Parameter("response_format", "served", "JSON mode or schema, to candidates that declare it; "
              "samples vote on their canonical JSON", "chat"),
    Parameter("echo", "served", "the prompt comes back before the answer", "legacy"),
    Parameter("best_of", "refused", "1 only: `best_of` picks by log-probability; the vote "
              "picks by agreement: use `n_samples`", "legacy"),
    Parameter("logprobs", "refused", "`false`/null only: the samples' log-probabilities are not "
              "collected (a voted answer's would be one sample's)"),
    Parameter("top_logprobs", "refused", "0-20 with `logprobs: true` (checked), which is refused",
              "chat"),
    Parameter("functions", "refused", "the deprecated form of `tools`: use `tools`", "chat"),
    Parameter("function_call", "refused", "the deprecated form of `tool_choice`: use "
              "`tool_choice`", "chat"),
    Parameter("suffix", "refused", "null only: the candidates are not asked to fill in text",
              "legacy"),
    Parameter("store", "refused", "`false`/null only: completions are not stored"),
    Parameter("metadata", "refused", "null only: it tags stored completions, and none are "
              "stored"),
    Parameter("service_tier", "refused", "`auto`/`default`/null only: the server has one tier"),
    Parameter("modalities", "refused", "`[\"text\"]` only", "chat"),
    Parameter("audio", "refused", "null only: text in, text out", "chat"),
    Parameter("prediction", "refused", "null only: predicted outputs are not passed on", "chat"),
    Parameter("web_search_options", "refused", "null only: the candidates do not search", "chat"),
)  # fmt: skip
"""Every OpenAI parameter a completion request may carry, and how it is handled."""

EXTENSIONS: tuple[str, ...] = (
    "n_samples", "alpha", "strategy", "answer_type", "max_cost", "conversation",
)  # fmt: skip
"""The server's own request fields (``extra_body`` in the openai client)."""

UPSTREAM: tuple[str, ...] = (
    "seed", "top_p", "frequency_penalty", "presence_penalty", "user", "logit_bias",
)  # fmt: skip
"""The parameters handed to every sample's request as given (after :func:`check_parameters`)."""

_BY_NAME = {p.name: p for p in PARAMETERS}


def _number(name: str, lo: float, hi: float, *, integer: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if not ok or isinstance(v, bool) or not lo <= v <= hi:
            kind = "an integer" if integer else "a number"
            raise ParameterError(f"'{name}' must be {kind} in [{lo:g}, {hi:g}], got {v!r}", name)
        return v

    return check


def _logit_bias(v: Any) -> Any:
    if not isinstance(v, Mapping):
        raise ParameterError(
            "'logit_bias' must map token ids to biases in [-100, 100]", "logit_bias"
        )
    for k, b in v.items():
        if not (isinstance(k, str) and k.strip().lstrip("-").isdigit()):
            raise ParameterError(f"'logit_bias' key {k!r} is not a token id", "logit_bias")
        _number("logit_bias", -100, 100)(b)
    return dict(v)


def _user(v: Any) -> Any:
    if not isinstance(v, str):
        raise ParameterError("'user' must be a string", "user")
    return v


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "seed": _number("seed", -(2**63), 2**63 - 1, integer=True),
    "top_p": _number("top_p", 0, 1),
    "frequency_penalty": _number("frequency_penalty", -2, 2),
    "presence_penalty": _number("presence_penalty", -2, 2),
    "user": _user,
    "logit_bias": _logit_bias,
}


def check_upstream(name: str, value: Any) -> Any:
    """``value`` checked as parameter ``name`` of :data:`UPSTREAM`, or :class:`ParameterError`."""
    return _CHECKS[name](value)


def _refuse(name: str, why: str) -> ParameterError:
    return ParameterError(f"'{name}' cannot be honoured here: {why}", name)


def check_parameters(
    body: Mapping[str, Any], *, chat: bool, pinned: bool = False, served: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Apply :data:`PARAMETERS` to a completion request ``body``: raise :class:`ParameterError`
    for an unknown parameter, a malformed one, or one that cannot be honoured; return the
    :data:`UPSTREAM` parameters to pass to the candidates. ``pinned``: the request's profile
    pins one candidate (then ``logit_bias`` can be honoured). ``served``: further field names
    the caller handles itself. A null value counts as absent, as the OpenAI API takes it."""
    known = {p.name for p in PARAMETERS if p.where in ("both", "chat" if chat else "legacy")}
    for name in body:
        if name in known or name in EXTENSIONS or name in served:
            continue
        if name in _BY_NAME:
            other = "/v1/completions" if chat else "/v1/chat/completions"
            raise ParameterError(f"'{name}' is a parameter of {other}, not of this endpoint", name)
        raise ParameterError(
            f"Unrecognized request argument supplied: {name} (the server takes OpenAI's "
            f"parameters and its own {', '.join(EXTENSIONS)}; see docs/serve.md)",
            name,
        )
    given = {k: v for k, v in body.items() if v is not None}
    out = {k: check_upstream(k, given[k]) for k in UPSTREAM if k in given}
    if "logit_bias" in out and out["logit_bias"] and not pinned:
        raise _refuse(
            "logit_bias",
            "token ids belong to one tokenizer and a routed request cannot know which "
            "candidate answers; use a profile that pins a candidate (model='<candidate>')",
        )
    _check_refused(given, chat)
    return {k: v for k, v in out.items() if not (k == "logit_bias" and not v)}


def _check_refused(given: Mapping[str, Any], chat: bool) -> None:
    lp = given.get("logprobs")
    if chat:
        if "logprobs" in given and not isinstance(lp, bool):
            raise ParameterError("'logprobs' must be true or false", "logprobs")
        if "top_logprobs" in given:
            _number("top_logprobs", 0, 20, integer=True)(given["top_logprobs"])
            if lp is not True:
                raise ParameterError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    elif "logprobs" in given:
        _number("logprobs", 0, 5, integer=True)(lp)
    if lp is True or (not chat and "logprobs" in given):
        raise _refuse(
            "logprobs",
            "the samples' log-probabilities are not collected (a voted answer's would be one "
            "sample's among several)",
        )
    if "best_of" in given:
        _number("best_of", 1, 20, integer=True)(given["best_of"])
        if given["best_of"] != 1:
            raise _refuse(
                "best_of",
                "best_of picks the sample with the highest log-probability; here samples vote: "
                "use n_samples",
            )
    for name, instead in (("functions", "tools"), ("function_call", "tool_choice")):
        if name in given:
            raise _refuse(name, f"it is the deprecated form of '{instead}': use '{instead}'")
    plain = {
        "suffix": "the candidates are not asked to fill in text",
        "metadata": "it tags stored completions, and none are stored",
        "audio": "text in, text out",
        "prediction": "predicted outputs are not passed on",
        "web_search_options": "the candidates do not search",
    }
    for name, why in plain.items():
        if name in given:
            raise _refuse(name, why)
    if given.get("store") not in (None, False):
        raise _refuse("store", "completions are not stored")
    if given.get("service_tier") not in (None, "auto", "default"):
        raise _refuse("service_tier", "the server has one tier ('auto' or 'default')")
    if "modalities" in given and given["modalities"] != ["text"]:
        raise _refuse("modalities", "text in, text out (['text'] only)")


__all__ = [
    "EXTENSIONS",
    "PARAMETERS",
    "UPSTREAM",
    "Parameter",
    "ParameterError",
    "check_parameters",
    "check_upstream",
]
