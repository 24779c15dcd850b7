"""``avengers.stores.feedback.send_feedback`` (and its async twin) against a real avengers server over
HTTP: every refusal and every connection failure is the package's own ``FeedbackError`` with a
message saying what happened, never a bare ``httpx`` error."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from avengers import Answerer, Endpoint, Router
from avengers.server import create_app
from avengers.stores.feedback import (
    FeedbackError,
    SQLiteFeedbackStore,
    asend_feedback,
    send_feedback,
)
from fake_openai_server import FakeModel, FakeOpenAIServer
from test_serve import Running


@pytest.fixture
def server(toy_router: Router, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running server that keeps feedback (key ``sk-test``), and the id of one answer."""
    up = FakeOpenAIServer({"math": FakeModel(answers=["391"])}).start()
    eps = {
        m: Endpoint(m, up.base_url, model="math", max_retries=0)
        for m in ("math-model", "chef-model", "code-model")
    }
    router = Router.from_state(*toy_router.state(), embedder=toy_router.get_embedder())
    app = create_app(
        Answerer(router, eps, strategy="direct"),
        api_keys={"sk-test"},
        feedback_store=SQLiteFeedbackStore(tmp_path / "fb.db"),
    )
    running = Running(app)
    try:
        r = httpx.post(
            f"{running.url}/v1/chat/completions",
            json={"model": "avengers", "messages": [{"role": "user", "content": "17 * 23?"}]},
            headers={"authorization": "Bearer sk-test"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        yield f"{running.url}/v1", r.json()["id"]
    finally:
        running.stop()
        up.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_refusal_and_connection_failure_is_a_feedback_error(
    server: tuple[str, str],
) -> None:
    url, rid = server
    reply = send_feedback(url, rid, 1.0, api_key="sk-test")
    assert reply["id"] == rid and reply["applied"] is True
    refusals = [
        ((url, rid, 0.0), "sk-test", r"\(409\).*rated already"),
        ((url, "chatcmpl-nope", 1.0), "sk-test", r"\(404\)"),
        ((url, rid, 1.5), "sk-test", r"\(400\).*score"),
        ((url, rid, 0.0), "wrong", r"\(401\)"),
        ((url.removesuffix("/v1") + "/nowhere/v1", rid, 0.0), "sk-test", r"\(404\)"),
    ]
    for args, key, message in refusals:
        with pytest.raises(FeedbackError, match=message):
            send_feedback(*args, api_key=key)
        with pytest.raises(FeedbackError, match=message):
            asyncio.run(asend_feedback(*args, api_key=key))
    nobody = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(FeedbackError, match=r"could not send the rating to .*ConnectError"):
        send_feedback(nobody, rid, 1.0)
    with pytest.raises(FeedbackError, match=r"could not send the rating to .*ConnectError"):
        asyncio.run(asend_feedback(nobody, rid, 1.0))


def test_a_server_that_never_answers_is_a_feedback_error() -> None:
    """A listening socket that accepts and says nothing: the timeout is a FeedbackError too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        with pytest.raises(FeedbackError, match=r"could not send the rating .*Timeout"):
            send_feedback(url, "chatcmpl-x", 1.0, timeout=0.3)
        with pytest.raises(FeedbackError, match=r"could not send the rating .*Timeout"):
            asyncio.run(asend_feedback(url, "chatcmpl-x", 1.0, timeout=0.3))
