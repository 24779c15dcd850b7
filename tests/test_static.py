"""The static (model2vec) embedder: vectors, name round trip, routers saved with it, projection
and distillation. Uses the default static model (setup.sh distils it once into the cache; if it is
missing the first test distils it, about 1-2 minutes)."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from avengers import ConfigError, Router
from avengers.embedding.embedders import InvalidTextError, resolve_embedder
from avengers.embedding.static import (
    DEFAULT_STATIC,
    INFO_FILE,
    INLINE_MAX_CHARS,
    INLINE_MAX_TEXTS,
    StaticEmbedder,
    distill,
    fit_projection,
    query_vocabulary,
)
from toy import toy_rows


@pytest.fixture(scope="session")
def static() -> StaticEmbedder:
    emb = StaticEmbedder()
    emb.embed(["load"])  # distils the default once if it is missing
    return emb


def test_static_vectors_are_unit_length_and_meaningful(static: StaticEmbedder) -> None:
    v = static.embed(["How do I bake bread?", "Bread baking instructions", "What is 2 + 2?"])
    assert v.shape == (3, 256) and v.dtype == np.float32 and static.dimension == 256
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert static.embed([]).shape == (0, 256)
    # no known token at all: still a unit vector (a fixed direction), never zeros or NaN
    empty = static.embed(["", "   "])
    np.testing.assert_allclose(np.linalg.norm(empty, axis=1), 1.0, atol=1e-5)


def test_async_embedding_runs_a_few_texts_inline_and_the_rest_on_a_thread(
    static: StaticEmbedder,
) -> None:
    """Same vectors either way; one short text on the calling (event loop) thread; several
    texts, a long text, and the first call of an embedder that has not loaded its model, on a
    worker."""
    threads: list[int] = []
    embed = static.embed

    def spy(texts: list[str]) -> np.ndarray:
        threads.append(threading.get_ident())
        return embed(texts)

    few = ["What is 17 times 23?"][:INLINE_MAX_TEXTS]
    many = [f"question number {i} about bread" for i in range(INLINE_MAX_TEXTS + 1)]
    long = ["bread " * (INLINE_MAX_CHARS // 6 + 1)]
    static.embed = spy  # type: ignore[method-assign]
    try:
        loop_thread: list[int] = []

        async def run(texts: list[str]) -> np.ndarray:
            loop_thread.append(threading.get_ident())
            return await static.aembed(texts)

        np.testing.assert_array_equal(asyncio.run(run(few)), embed(few))
        np.testing.assert_array_equal(asyncio.run(run(many)), embed(many))
        np.testing.assert_array_equal(asyncio.run(run(long)), embed(long))
    finally:
        del static.embed  # type: ignore[method-assign]
    assert threads[0] == loop_thread[0]  # one short text: on the loop
    assert threads[1] != loop_thread[1] and threads[2] != loop_thread[2]  # many / long: a worker
    fresh = StaticEmbedder()  # not loaded yet: loading (maybe distilling) is not for the loop
    fresh_threads: list[int] = []
    fresh_embed = fresh.embed

    def fresh_spy(texts: list[str]) -> np.ndarray:
        fresh_threads.append(threading.get_ident())
        return fresh_embed(texts)

    fresh.embed = fresh_spy  # type: ignore[method-assign]
    asyncio.run(fresh.aembed(few))
    assert fresh_threads and fresh_threads[0] != threading.get_ident()
    with pytest.raises(InvalidTextError):
        asyncio.run(static.aembed(["fine", 3]))  # type: ignore[list-item]


def test_static_name_round_trips_through_resolve_embedder(static: StaticEmbedder) -> None:
    assert static.name == f"static:{DEFAULT_STATIC}"
    q = ["What is 17 times 23?", "How do I caramelize onions?"]
    for spec in ("static", static.name, f"static:{static.path}"):
        again = resolve_embedder(spec)
        assert isinstance(again, StaticEmbedder)  # never wrapped in a cache
        assert again.name == static.name
        np.testing.assert_array_equal(again.embed(q), static.embed(q))
    with pytest.raises(ConfigError, match="not found"):
        resolve_embedder("static:no-such-static-model")


def test_a_named_static_folder_resolves_from_the_cache(
    static: StaticEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "static" / "my-static"
    shutil.copytree(static.path, folder)
    emb = StaticEmbedder(folder)
    assert emb.name == "static:my-static"
    monkeypatch.setenv("AVENGERS_CACHE", str(tmp_path))
    again = resolve_embedder(emb.name)
    assert again.name == "static:my-static"
    np.testing.assert_array_equal(again.embed(["soup"]), static.embed(["soup"]))
    short = resolve_embedder("static:my-static@4")
    assert short.name == "static:my-static@4"
    assert not np.allclose(
        short.embed(["one two three four five six"]), emb.embed(["one two three four five six"])
    )


def test_router_with_static_embedder_saves_loads_and_routes_identically(
    static: StaticEmbedder, tmp_path: Path
) -> None:
    r = Router.paper(3, embedder="static").fit(toy_rows())
    assert r.embedder_name_ == static.name
    r.save_pretrained(tmp_path / "router")
    loaded = Router.from_pretrained(tmp_path / "router")  # resolves the recorded name
    assert loaded.get_embedder().name == static.name
    q = ["What is 3 times 3?", "How do I make soup?", "Write a Python function to sort a list."]
    assert [d.ranking for d in loaded.route_batch(q)] == [d.ranking for d in r.route_batch(q)]
    assert [d.model for d in r.route_batch(q)] == ["math-model", "chef-model", "code-model"]


def test_static_rejects_bad_text_before_embedding(static: StaticEmbedder) -> None:
    with pytest.raises(InvalidTextError, match="text 1") as e:
        static.embed(["fine", "\ud800", "also fine"])
    assert e.value.index == 1 and isinstance(e.value, ConfigError)
    with pytest.raises(InvalidTextError, match="text 0 is int"):
        static.embed([3])  # type: ignore[list-item]


def test_projection_maps_static_vectors_towards_the_target(
    static: StaticEmbedder, embedder, tmp_path: Path
) -> None:
    queries = [r["query"] for r in toy_rows()]
    out = fit_projection(static, embedder, queries, tmp_path / "toy-map", ridge=0.1)
    mapped = StaticEmbedder(out)
    assert mapped.name == "static:toy-map" and mapped.dimension == 384
    v = mapped.embed(queries)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    target = embedder.embed(queries)
    # on its own training texts the mapped vectors are close to MiniLM's
    assert float(np.mean(np.sum(v * target, axis=1))) > 0.9
    with pytest.raises(ConfigError, match="already exists"):
        fit_projection(static, embedder, queries, out)


def test_query_vocabulary() -> None:
    words = query_vocabulary(["Zebra zebra apple", "ZEBRA apple 42 x"], min_count=2)
    assert words == ["zebra", "apple"]


@pytest.mark.slow
def test_distill_writes_a_loadable_folder_atomically(tmp_path: Path) -> None:
    out = tmp_path / "mini-pca32"
    got = distill(None, out, pca_dims=32, vocabulary=["avengersrouter"], show_progress=False)
    assert got == out and (out / INFO_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    emb = StaticEmbedder(out)
    assert emb.dimension == 32 and emb.name == "static:mini-pca32"
    np.testing.assert_allclose(
        np.linalg.norm(emb.embed(["avengersrouter"]), axis=1), 1.0, atol=1e-5
    )
    assert distill(None, out, exist_ok=True) == out  # already there: nothing is redone
    with pytest.raises(ConfigError, match="already exists"):
        distill(None, out)
