"""A fleet that learns as one (avengers.stores.fleet, avengers.server.learning): followers of the store's
rating log agree exactly with one Router.update over the same ratings in log order, whatever
batches they read; a late replica catches up from its version's sequence number; servers on one
store converge; new router versions are swapped in live, bad ones refused while the old serves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from avengers import Answerer, Endpoint, Router
from avengers.server import create_app
from avengers.stores.feedback import SQLiteFeedbackStore
from avengers.stores.fleet import LogFollower, VersionWatcher, check_version, last_seq
from avengers.stores.snapshot import SEQ_KEY, apply_store, save_atomically
from fake_openai_server import FakeModel, FakeOpenAIServer
from test_serve import Running
from toy import SKILL
from waiting import wait_until

MODELS = list(SKILL)


def _copy(router: Router) -> Router:
    config, arrays = router.state()
    return Router.from_state(
        config, {k: v.copy() for k, v in arrays.items()}, embedder=router.get_embedder()
    )


def _rate_many(store: SQLiteFeedbackStore, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        model = MODELS[int(rng.integers(len(MODELS)))]
        cost = None if i % 3 == 0 else float(rng.uniform(0, 2))
        store.add(model, int(rng.integers(3)), float(rng.uniform()), cost)


def _reference(base: Router, store: SQLiteFeedbackStore) -> Router:
    """One router, one Router.update per rating, in log order."""
    ref = _copy(base)
    for r in store.ratings(last_seq(base)):
        cost = r.cost if ref.cost_sums_ is not None and r.cost is not None else None
        ref.update(
            models=[r.model], scores=[r.score], clusters=[r.cluster],
            costs=None if cost is None else [cost],
        )  # fmt: skip
    return ref


def _assert_same_statistics(a: Router, b: Router) -> None:
    assert a.models_ == b.models_
    np.testing.assert_array_equal(a.score_sums_, b.score_sums_)  # exactly: same order of sums
    np.testing.assert_array_equal(a.score_counts_, b.score_counts_)
    np.testing.assert_array_equal(a.cost_sums_, b.cost_sums_)
    np.testing.assert_array_equal(a.cost_counts_, b.cost_counts_)
    np.testing.assert_array_equal(a.global_scores_, b.global_scores_)


@pytest.mark.parametrize("half_life", [None, 5.0])
def test_followers_equal_one_update_in_log_order_whatever_their_batches(
    toy_router: Router, tmp_path: Path, half_life: float | None
) -> None:
    base = _copy(toy_router)
    base.set_params(half_life=half_life)
    writers = [SQLiteFeedbackStore(tmp_path / "fb.db") for _ in range(2)]  # two workers
    a = LogFollower(SQLiteFeedbackStore(tmp_path / "fb.db"), _copy(base))
    b = LogFollower(SQLiteFeedbackStore(tmp_path / "fb.db"), _copy(base))
    for step in range(6):  # interleaved writers; follower a reads every step, b every other
        _rate_many(writers[step % 2], 7, seed=step)
        a.catch_up()
        if step % 2:
            b.catch_up()
    b.catch_up()
    ref = _reference(base, writers[0])
    assert last_seq(a.router) == last_seq(b.router) == 42
    _assert_same_statistics(a.router, ref)
    _assert_same_statistics(b.router, ref)
    assert a.catch_up() == 0 and a.applied == 42  # nothing counted twice


def test_a_late_replica_catches_up_from_its_versions_sequence_number(
    toy_router: Router, tmp_path: Path
) -> None:
    store = SQLiteFeedbackStore(tmp_path / "fb.db")
    _rate_many(store, 20, seed=1)
    version = _copy(toy_router)
    apply_store(version, store)  # `avengers snapshot`: the version records #20
    save_atomically(version, tmp_path / "v2")
    _rate_many(store, 15, seed=2)
    late = Router.from_pretrained(tmp_path / "v2")
    assert late.training_summary_[SEQ_KEY] == 20
    follower = LogFollower(store, late)
    assert follower.catch_up() == 15  # only what came after the version
    _assert_same_statistics(late, _reference(toy_router, store))


def test_a_pruned_log_is_counted_as_a_gap_not_hidden(toy_router: Router, tmp_path: Path) -> None:
    store = SQLiteFeedbackStore(tmp_path / "fb.db", max_ratings=5)
    _rate_many(store, 12, seed=3)
    store.prune()
    follower = LogFollower(store, _copy(toy_router))
    assert follower.catch_up() == 5
    assert follower.skipped == 7 and last_seq(follower.router) == 12


def test_check_version_refuses_what_cannot_replace_the_served_router(
    toy_router: Router, tmp_path: Path
) -> None:
    from avengers.embedding.static import StaticEmbedder
    from avengers.stores.fleet import VersionRefused
    from toy import toy_rows

    other = Router.paper(3, embedder=StaticEmbedder()).fit(toy_rows())
    with pytest.raises(VersionRefused, match="embeds with"):
        check_version(other, toy_router, MODELS)
    with pytest.raises(VersionRefused, match="has an endpoint"):
        check_version(_copy(toy_router), toy_router, ["elsewhere"])
    bad = _copy(toy_router)
    bad.score_sums_[0, 0] = np.nan
    with pytest.raises(VersionRefused, match="not all finite"):
        check_version(bad, toy_router, MODELS)
    save_atomically(toy_router, tmp_path / "r")
    watcher = VersionWatcher(tmp_path / "r")
    assert watcher.poll() is None
    (tmp_path / "r" / "config.json").write_text("{not json")
    sig = watcher.poll()
    assert sig is not None
    with pytest.raises(VersionRefused):
        watcher.load()


# --- servers ----------------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer({m: FakeModel(answers=["391"]) for m in MODELS}).start()
    yield s
    s.stop()


def _app(router: Router, upstream: FakeOpenAIServer, db: Path, **kw: Any) -> Running:
    eps = {m: Endpoint(m, upstream.base_url, model=m, max_retries=0) for m in MODELS}
    store = SQLiteFeedbackStore(db)
    return Running(create_app(Answerer(router, eps, n_samples=1), feedback_store=store, **kw))


def _learning(url: str) -> dict[str, Any]:
    out: dict[str, Any] = httpx.get(f"{url}/v1/admin/learning", timeout=10).json()
    return out


def test_two_servers_on_one_store_learn_every_rating(
    toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Two replicas (apps) on one SQLite store: ratings sent to either reach both within the
    follow interval, and both equal one router updated with every rating in log order."""
    db = tmp_path / "fb.db"
    a = _app(_copy(toy_router), upstream, db, follow_interval=0.2)
    b = _app(_copy(toy_router), upstream, db, follow_interval=0.2)
    try:
        for i in range(12):
            url = (a, b)[i % 2].url
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "avengers", "messages": [{"role": "user", "content": "17 * 23?"}]},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            fb = httpx.post(f"{url}/v1/feedback", json={"id": r.json()["id"], "score": i / 12})
            assert fb.status_code == 200, fb.text
            # read-your-writes: the replica that took the rating has absorbed it already
            assert _learning(url)["seq"] >= fb.json()["seq"]
        wait_until(lambda: _learning(a.url)["seq"] == _learning(b.url)["seq"] == 12, 10, "converge")
        ref = _reference(toy_router, SQLiteFeedbackStore(db))
        for url in (a.url, b.url):
            state = _learning(url)
            np.testing.assert_array_equal(np.array(state["score_sums"]), ref.score_sums_)
            np.testing.assert_array_equal(np.array(state["score_counts"]), ref.score_counts_)
        metrics = httpx.get(f"{a.url}/metrics").text
        assert "avengers_feedback_applied_seq 12" in metrics
    finally:
        a.stop()
        b.stop()


def test_a_new_router_version_is_swapped_in_live_and_a_bad_one_refused(
    toy_router: Router, upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    db = tmp_path / "fb.db"
    folder = tmp_path / "my-router"
    save_atomically(toy_router, folder)
    served = Router.from_pretrained(folder)
    app = _app(served, upstream, db, router_path=folder, reload_interval=0.2, follow_interval=0.2)
    try:
        store = SQLiteFeedbackStore(db)
        _rate_many(store, 10, seed=4)
        wait_until(lambda: _learning(app.url)["seq"] == 10, 10, "follow the log")
        assert _learning(app.url)["version"] == 1

        # a new version (what `avengers snapshot` writes) recorded at #6: the server continues
        # the log from #6, so it ends equal to the version plus ratings 7..10
        version = Router.from_pretrained(folder)
        for r in store.ratings(0)[:6]:
            version.update(models=[r.model], scores=[r.score], clusters=[r.cluster],
                           costs=None if r.cost is None else [r.cost])  # fmt: skip
        version.training_summary_ = {**version.training_summary_, SEQ_KEY: 6}
        version.set_params(alpha=0.9)  # something that shows the new version is served
        save_atomically(version, folder)
        wait_until(lambda: _learning(app.url)["version"] == 2, 15, "the new version swapped in")
        expected = _copy(version)
        LogFollower(store, expected).catch_up()
        state = _learning(app.url)
        assert state["seq"] == 10
        np.testing.assert_array_equal(np.array(state["score_sums"]), expected.score_sums_)
        r = httpx.post(
            f"{app.url}/v1/route", json={"messages": [{"role": "user", "content": "17 * 23?"}]}
        )
        assert r.status_code == 200

        # a broken version: refused (by the watcher or at once by POST /v1/admin/reload,
        # whichever looks first), counted, logged; the served one stays and keeps answering
        (folder / "config.json").write_text(json.dumps({"format": "nonsense"}))
        out = httpx.post(f"{app.url}/v1/admin/reload", timeout=30)
        if out.json()["status"] != "unchanged":  # the watcher had not looked yet
            assert out.status_code == 422 and out.json()["status"] == "refused", out.text
            assert "not an avengers router config" in out.json()["reason"]
        metrics = lambda: httpx.get(f"{app.url}/metrics").text  # noqa: E731
        wait_until(lambda: "avengers_router_versions_refused_total 1" in metrics(), 10, "refused")
        assert "avengers_router_version 2" in metrics()
        assert _learning(app.url)["version"] == 2
        chat = httpx.post(
            f"{app.url}/v1/chat/completions",
            json={"model": "avengers", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert chat.status_code == 200
        assert httpx.post(f"{app.url}/v1/admin/reload").json()["status"] == "unchanged"
    finally:
        app.stop()


def test_a_position_from_another_log_follows_this_store_from_its_start(
    toy_router: Router, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A router version that records rating #5 of some other store, served on a new store: the
    new store's ratings #1.. are counted (not skipped as 'already absorbed'), and the log says
    why. A position the store does hold is kept."""
    router = _copy(toy_router)
    router.training_summary_ = {**router.training_summary_, SEQ_KEY: 5}
    store = SQLiteFeedbackStore(tmp_path / "new.db")
    try:
        store.add("math-model", 1, 0.3)
        store.add("chef-model", 2, 1.0)
        before = router.score_counts_.copy()
        follower = LogFollower(store, router)
        with caplog.at_level("WARNING", logger="avengers.stores.fleet"):
            assert follower.catch_up() == 2
        assert "beyond this store's last rating" in caplog.text
        assert last_seq(router) == 2
        j, k = MODELS.index("math-model"), MODELS.index("chef-model")
        assert router.score_counts_[1, j] == before[1, j] + 1
        assert router.score_counts_[2, k] == before[2, k] + 1
        # now the position is this log's own: the next rating alone is applied
        store.add("math-model", 1, 0.5)
        assert follower.catch_up() == 1 and last_seq(router) == 3
    finally:
        store.close()


def test_a_model_a_new_version_adds_can_be_pinned_at_once(
    toy_router: Router, tmp_path: Path
) -> None:
    """The pinned profiles (one model name per candidate) follow the served version: a model the
    new version adds is listed and answers by name without a restart."""
    upstream = FakeOpenAIServer(
        {m: FakeModel(answers=[f"{m} says 391"]) for m in [*MODELS, "new-model"]}
    ).start()
    folder = tmp_path / "my-router"
    save_atomically(toy_router, folder)
    eps = {
        m: Endpoint(m, upstream.base_url, model=m, max_retries=0) for m in [*MODELS, "new-model"]
    }
    app = Running(
        create_app(
            Answerer(Router.from_pretrained(folder), eps, n_samples=1),
            router_path=folder,
            reload_interval=0.2,
        )
    )
    try:
        ids = lambda: {m["id"] for m in httpx.get(f"{app.url}/v1/models").json()["data"]}  # noqa: E731
        assert "new-model" not in ids() and set(MODELS) <= ids()
        pinned = {"model": "new-model", "messages": [{"role": "user", "content": "17 * 23?"}]}
        assert httpx.post(f"{app.url}/v1/chat/completions", json=pinned).status_code == 404

        version = Router.from_pretrained(folder).add_model("new-model")
        save_atomically(version, folder)
        wait_until(lambda: "new-model" in ids(), 15, "the new version's profiles")
        r = httpx.post(f"{app.url}/v1/chat/completions", json=pinned, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "new-model says 391"
    finally:
        app.stop()
        upstream.stop()
