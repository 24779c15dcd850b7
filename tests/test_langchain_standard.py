"""LangChain's standard test suites for ChatAvengers. The integration suite runs against the
local deterministic OpenAI-compatible server (real HTTP).

Tool calling, tool choice, structured output (function calling, the default method) and JSON
mode are on: the endpoints declare those capabilities and the fake server answers tool-bearing
requests with tool calls (arguments from the tool's schema and the prompt) and response_format
requests with JSON. Capabilities declared absent (their standard tests are skipped by the suite
itself, not here): image, PDF, audio and video inputs and Anthropic-style inputs -- the fake
server and the routing recipe read text only. Expected to fail here: the standard serdes test (it loads
with ``allowed_objects="all"``, LangChain's list of its partner packages, which cannot name
this one; tests/test_parity_langchain.py round-trips ChatAvengers beside ChatOpenAI with
``allowed_objects=[ChatAvengers]``) and the VCR timing test. The unit suite's standard
``api_key`` is left out: ChatAvengers refuses it (each endpoint's key is read from the
environment variable its ``api_key_env`` names). A per-call `model=` pins that candidate
instead of routing.
"""

from __future__ import annotations

import atexit
from functools import cache
from typing import Any

import pytest
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
    def standard_chat_model_params(self) -> dict[str, Any]:
        params = super().standard_chat_model_params
        params.pop("api_key")  # refused: keys are read per endpoint from the environment
        return params

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"AVENGERS_ROUTER": "pretrained", "AVENGERS_ENDPOINTS": "endpoints.yaml"},
            {},
            {"router": "pretrained", "endpoints": "endpoints.yaml"},
        )

    @pytest.mark.xfail(
        reason="loads with allowed_objects='all', LangChain's list of its partner packages, "
        "which cannot name this one (and compares with a stored snapshot); "
        "tests/test_parity_langchain.py round-trips ChatAvengers beside ChatOpenAI"
    )
    def test_serdes(self, model: Any, snapshot: Any) -> None:
        super().test_serdes(model, snapshot)

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
