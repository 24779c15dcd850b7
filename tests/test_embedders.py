from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from avengers import ConfigError, Router
from avengers.embedding.embedders import CachedEmbedder, OpenAIEmbedder, SentenceTransformerEmbedder


class Counting:
    """Wraps a real embedder and counts the texts it is asked to embed."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.calls: list[int] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append(len(texts))
        return self.inner.embed(texts)


def test_minilm_vectors_are_unit_length_and_meaningful(
    embedder: SentenceTransformerEmbedder,
) -> None:
    v = embedder.embed(["How do I bake bread?", "Bread baking instructions", "What is 2 + 2?"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert embedder.embed([]).shape == (0, 384)


def test_cache_embeds_each_text_once(embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    counting = Counting(embedder)
    cached = CachedEmbedder(counting, tmp_path)
    texts = ["alpha question", "beta question", "alpha question"]
    a = cached.embed(texts)
    assert counting.calls == [2]  # the repeated text was embedded once
    b = CachedEmbedder(counting, tmp_path).embed(texts[::-1])  # a new instance reads the disk cache
    assert counting.calls == [2]
    np.testing.assert_allclose(a, b[::-1])
    cached.embed(["gamma question", "alpha question"])
    assert counting.calls == [2, 1]


def test_refit_with_another_k_does_not_reembed(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    from toy import toy_rows

    counting = Counting(embedder)
    cached = CachedEmbedder(counting, tmp_path)
    Router(n_clusters=2, embedder=cached).fit(toy_rows())
    Router(n_clusters=3, embedder=cached).fit(toy_rows())
    assert sum(counting.calls) == 30


def _fake_vector(text: str, dim: int = 16) -> list[float]:
    h = hashlib.sha256(text.encode()).digest()
    return [b / 255 - 0.5 for b in h[:dim]]


@pytest.fixture
def embedding_server() -> Iterator[tuple[str, list[dict[str, object]]]]:
    seen: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"auth": self.headers.get("Authorization"), "body": body})
            items = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": _fake_vector(t)}
                for i, t in enumerate(items)
            ][::-1]  # out of order on purpose: the client must sort by index
            out = json.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()


def test_openai_embedder_over_http(embedding_server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = embedding_server
    monkeypatch.setenv("TEST_EMBED_KEY", "sk-secret-123")
    emb = OpenAIEmbedder("fake-embed", url, api_key_env="TEST_EMBED_KEY", batch_size=2)
    v = emb.embed(["one", "two", "three"])
    assert v.shape == (3, 16)
    expected = np.array(_fake_vector("two"), dtype=np.float32)
    np.testing.assert_allclose(v[1], expected / np.linalg.norm(expected), rtol=1e-5)
    assert len(seen) == 2  # batched by 2
    assert seen[0]["auth"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(emb)
    assert emb.dimension == 16 and emb.name == "openai:fake-embed"
    va = asyncio.run(emb.aembed(["one", "two", "three"]))
    np.testing.assert_allclose(va, v)


def test_openai_embedder_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAIEmbedder("m", "localhost:8000")
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    emb = OpenAIEmbedder("m", "http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        emb.embed(["x"])


def test_router_with_http_embedder_round_trip(embedding_server, tmp_path: Path) -> None:
    from toy import toy_rows

    url, _ = embedding_server
    emb = OpenAIEmbedder("fake-embed", url)
    r = Router(n_clusters=3, embedder=emb).fit(toy_rows())
    assert r.embedder_name_ == "openai:fake-embed"
    r.save_pretrained(tmp_path)
    loaded = Router.from_pretrained(tmp_path, embedder=emb)
    q = ["What is 3 times 3?", "How do I make soup?"]
    assert loaded.route_batch(q) == r.route_batch(q)


async def test_batching_embedder_coalesces_concurrent_calls(
    embedder: SentenceTransformerEmbedder,
) -> None:
    from avengers.embedding.embedders import BatchingEmbedder

    counting = Counting(embedder)
    batching = BatchingEmbedder(counting, max_batch=64, max_wait=0.05)
    texts = [f"question number {i} about cooking pasta" for i in range(12)]
    parts = await asyncio.gather(*(batching.aembed([t]) for t in texts))
    # twelve concurrent one-text calls ran as (far) fewer forward passes, results in order
    assert len(counting.calls) < 12 and sum(counting.calls) == 12
    np.testing.assert_allclose(np.concatenate(parts), embedder.embed(texts), atol=1e-5)
    assert batching.name == embedder.name and batching.dimension == 384


def test_truncation_length_is_part_of_the_embedder_identity() -> None:
    a = SentenceTransformerEmbedder()
    b = SentenceTransformerEmbedder(max_seq_length=64)
    assert a.name != b.name and b.name.endswith("@64")
    long_text = "word " * 400
    va, vb = a.embed([long_text]), b.embed([long_text])
    assert not np.allclose(va, vb)  # truncation changed the vector, so the cache key differs


class Fake:
    """A fast deterministic embedder that fails on texts containing 'boom' and counts texts."""

    name = "fake"
    dimension = 16

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts):  # type: ignore[no-untyped-def]
        texts = list(texts)
        self.calls.append(texts)
        if any("boom" in t for t in texts):
            raise RuntimeError("model failed on boom")
        X = np.array([_fake_vector(t) for t in texts], dtype=np.float32).reshape(len(texts), 16)
        return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_check_texts_names_the_bad_item() -> None:
    from avengers.embedding.embedders import InvalidTextError, check_texts

    assert check_texts(("a", "b")) == ["a", "b"]
    with pytest.raises(InvalidTextError, match=r"text 2 cannot be encoded as UTF-8") as e:
        check_texts(["ok", "fine", "bad \ud800 here"])
    assert e.value.index == 2 and isinstance(e.value, ConfigError)
    with pytest.raises(InvalidTextError, match="text 1 is NoneType"):
        check_texts(["ok", None])
    with pytest.raises(InvalidTextError, match="single string"):
        check_texts("not a list")


def test_bad_text_is_rejected_before_anything_is_embedded(tmp_path: Path) -> None:
    from avengers.embedding.embedders import InvalidTextError, MemoryCachedEmbedder

    fake = Fake()
    for wrapper in (CachedEmbedder(fake, tmp_path), MemoryCachedEmbedder(fake)):
        with pytest.raises(InvalidTextError, match="text 1"):
            wrapper.embed(["good", "\udfff"])
    assert fake.calls == []


async def test_batching_embedder_isolates_a_failing_caller() -> None:
    from avengers.embedding.embedders import BatchingEmbedder, InvalidTextError

    fake = Fake()
    batching = BatchingEmbedder(fake, max_batch=64, max_wait=0.05)
    texts = ["first", "second boom", "third", "fourth"]
    results = await asyncio.gather(*(batching.aembed([t]) for t in texts), return_exceptions=True)
    assert isinstance(results[1], RuntimeError)  # only the offending caller gets the error
    for i in (0, 2, 3):
        assert isinstance(results[i], np.ndarray)
        np.testing.assert_allclose(results[i], fake.embed([texts[i]]), atol=1e-6)
    assert fake.calls[0] == texts  # they were batched together first
    # text that cannot be encoded never joins a batch
    bad, good = await asyncio.gather(
        batching.aembed(["\ud800"]), batching.aembed(["fine"]), return_exceptions=True
    )
    assert isinstance(bad, InvalidTextError) and isinstance(good, np.ndarray)
    assert all("\ud800" not in t for call in fake.calls for t in call)


async def test_memory_cache_is_a_bounded_lru() -> None:
    from avengers.embedding.embedders import MemoryCachedEmbedder

    fake = Fake()
    mem = MemoryCachedEmbedder(fake, max_items=3)
    mem.embed(["a", "b", "c", "a"])
    assert fake.calls == [["a", "b", "c"]]
    mem.embed(["a"])  # a hit: "a" becomes the most recently used
    mem.embed(["d"])  # evicts "b", the least recently used
    assert len(mem) == 3 and fake.calls[-1] == ["d"]
    mem.embed(["a", "c", "d"])
    assert len(fake.calls) == 2  # all three were still cached
    v = await mem.aembed(["b", "a"])  # async path: "b" is embedded again
    assert fake.calls[-1] == ["b"] and len(mem) == 3
    np.testing.assert_allclose(v, fake.embed(["b", "a"]), atol=1e-6)
    assert mem.name == "fake" and mem.dimension == 16


def test_disk_cache_keeps_at_most_max_rows(tmp_path: Path) -> None:
    import sqlite3

    fake = Fake()
    cached = CachedEmbedder(fake, tmp_path, max_rows=5, chunk_size=2)
    texts = [f"text {i}" for i in range(8)]
    cached.embed(texts[:4])
    cached.embed(texts[4:])
    (db,) = tmp_path.glob("*.sqlite")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM vec").fetchone() == (5,)
    n = len(fake.calls)
    cached.embed(texts[3:])  # the newest five are still cached
    assert len(fake.calls) == n
    cached.embed(texts[:1])  # the oldest were evicted
    assert fake.calls[-1] == ["text 0"]


def test_disk_cache_embeds_small_batches_first_so_progress_shows_early(tmp_path: Path) -> None:
    """The first batches are small and grow to ``chunk_size``: the progress bar moves after 16
    texts, not after 512 (most of a minute of MiniLM on a busy 2-core machine)."""
    fake = Fake()
    cached = CachedEmbedder(fake, tmp_path, chunk_size=512, show_progress=True)
    texts = [f"question {i}" for i in range(1500)]
    v = cached.embed(texts)
    assert [len(c) for c in fake.calls] == [16, 32, 64, 128, 256, 512, 492]
    assert [t for c in fake.calls for t in c] == texts
    np.testing.assert_allclose(v, fake.embed(texts), atol=1e-6)
    small = CachedEmbedder(Fake(), tmp_path / "small", chunk_size=5)
    small.embed(texts[:12])
    assert [len(c) for c in small.inner.calls] == [5, 5, 2]  # type: ignore[attr-defined]


def test_resolve_embedder_cache_modes() -> None:
    from avengers.embedding.embedders import MemoryCachedEmbedder, resolve_embedder

    assert isinstance(resolve_embedder(None), CachedEmbedder)
    assert isinstance(resolve_embedder(None, cache="disk"), CachedEmbedder)
    mem = resolve_embedder(None, cache="memory")
    assert isinstance(mem, MemoryCachedEmbedder) and mem.name == SentenceTransformerEmbedder().name
    assert isinstance(resolve_embedder(None, cache=False), SentenceTransformerEmbedder)
    assert isinstance(resolve_embedder(None, cache=None), SentenceTransformerEmbedder)
    with pytest.raises(ConfigError, match="cache must be"):
        resolve_embedder(None, cache="sometimes")
