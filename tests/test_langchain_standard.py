"""LangChain's standard test suites for ChatAvengers. The integration suite runs against the
local deterministic OpenAI-compatible server (real HTTP).

Tool calling, tool choice, structured output (function calling, the default method) and JSON
mode are on: the endpoints declare those capabilities and the fake server answers tool-bearing
requests with tool calls (arguments from the tool's schema and the prompt) and response_format
requests with JSON. Capabilities declared absent (their standard tests are skipped by the suite
itself, not here): image, PDF, audio and video inputs and Anthropic-style inputs -- the fake
server and the routing recipe read text only. Also skipped by the suite: serdes
(the model holds a live Router, not a serializable config), init-from-env (no settings come
from the environment; endpoint keys are read by name at call time) and the VCR timing test.
A per-call `model=` pins that candidate instead of routing.
"""

from __future__ import annotations

import atexit
from functools import cache
from typing import Any

from avengers import Endpoint, Router
from fake_openai_server import FakeModel, FakeOpenAIServer
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from toy import toy_rows

from langchain_avengers import ChatAvengers

CAPABILITIES = {"tools": True, "json_schema": True, "json_mode": True}
REPLY = "Hello there! Silent pond at dawn, a frog leaps in, ripples fade away."


@cache
def router() -> Router:
    return Router.paper(3).fit(toy_rows())


@cache
def server() -> FakeOpenAIServer:
    s = FakeOpenAIServer({m: FakeModel(answers=[REPLY]) for m in ("math", "chef", "coder")}).start()
    atexit.register(s.stop)
    return s


def endpoints() -> dict[str, Endpoint]:
    s = server()
    return {
        n: Endpoint(n, s.base_url, model=mid, max_retries=0, timeout=10, capabilities=CAPABILITIES)
        for n, mid in (("math-model", "math"), ("chef-model", "chef"), ("code-model", "coder"))
    }


class _Common:
    @property
    def chat_model_class(self) -> type[ChatAvengers]:
        return ChatAvengers

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "chef-model"  # a per-call model= pins that candidate


class TestChatAvengersUnit(_Common, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        # no network at construction: endpoints that nothing listens on are fine here
        return {
            "router": router(),
            "endpoints": {"math-model": {"base_url": "http://127.0.0.1:9/v1"}},
            "sampling": {"n_samples": 3},
        }


class TestChatAvengersIntegration(_Common, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": router(), "endpoints": endpoints(), "sampling": {"n_samples": 3}}
