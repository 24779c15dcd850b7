"""Value-asserting tests for the decision paths, each written so that changing one line of the
code it covers (a rating counted as 1.0, a deadline's total instead of its remaining time, a
fixed half-open window, swapped signal labels, shrinkage ignored, a margin compared with ``>=``)
makes it fail. Everything goes through public names: ``Router.fit/update/estimate/state``,
``feedback.apply_rating``, the breaker's and the deadline's methods, ``retry.retrying``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import pytest
from avengers import Router
from avengers.answering.voting import counts_margin
from avengers.routing.scoring import carried_by, shrunk_means
from avengers.stores.feedback import MemoryFeedbackStore, Rating, apply_rating
from avengers.transport.breaker import CircuitBreaker
from avengers.transport.deadline import Deadline, DeadlineExceeded, current, set_current, within
from avengers.transport.retry import MAX_RETRY_AFTER, GaveUp, backoff, retry_after, retrying
from toy import toy_rows

COOK_Q = "How long should I boil an egg for a runny yolk?"
MODELS = ["math-model", "chef-model", "code-model"]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ feedback.apply_rating


@pytest.fixture
def paper_router(embedder: Any) -> Router:
    """A fresh (per test) router with plain cluster means, so statistics can be read exactly."""
    return Router.paper(3, embedder=embedder).fit(toy_rows())


def _stats(router: Router) -> dict[str, np.ndarray]:
    _, arrays = router.state()
    return {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}


def test_a_rating_of_0_3_moves_the_statistics_by_exactly_0_3(paper_router: Router) -> None:
    r = paper_router
    c = r.route(COOK_Q).cluster
    m = MODELS.index("chef-model")
    before = _stats(r)
    store = MemoryFeedbackStore()
    store.remember("resp-1", "chef-model", c)
    rating = store.rate("resp-1", 0.3, cost=0.25)
    assert (rating.model, rating.cluster, rating.score, rating.cost) == ("chef-model", c, 0.3, 0.25)
    assert apply_rating(r, rating) is True
    after = _stats(r)

    added = np.zeros_like(before["score_sums"])
    added[c, m] = 1.0
    np.testing.assert_allclose(after["score_sums"] - before["score_sums"], 0.3 * added, atol=1e-12)
    np.testing.assert_array_equal(after["score_counts"] - before["score_counts"], added)
    np.testing.assert_allclose(after["cost_sums"] - before["cost_sums"], 0.25 * added, atol=1e-12)
    np.testing.assert_array_equal(after["cost_counts"] - before["cost_counts"], added)
    # the global mean (the shrinkage prior) is the column total over the column count
    total, n = before["score_sums"][:, m].sum(), before["score_counts"][:, m].sum()
    assert after["global_scores"][m] == pytest.approx((total + 0.3) / (n + 1), abs=1e-12)
    np.testing.assert_allclose(
        np.delete(after["global_scores"], m), np.delete(before["global_scores"], m)
    )
    # with shrinkage 0 the cluster estimate is the plain mean of the cell
    s, k = before["score_sums"][c, m], before["score_counts"][c, m]
    assert r.cluster_scores()[c, m] == pytest.approx((s + 0.3) / (k + 1), abs=1e-12)


def test_a_zero_rating_counts_once_and_adds_nothing_to_the_sum(paper_router: Router) -> None:
    r = paper_router
    c = r.route(COOK_Q).cluster
    m = MODELS.index("math-model")
    before = _stats(r)
    assert apply_rating(r, Rating(1, None, "math-model", c, 0.0))
    after = _stats(r)
    assert after["score_sums"][c, m] == pytest.approx(before["score_sums"][c, m], abs=1e-12)
    assert after["score_counts"][c, m] == before["score_counts"][c, m] + 1
    # no cost given: the cost statistics are untouched
    np.testing.assert_array_equal(after["cost_sums"], before["cost_sums"])
    np.testing.assert_array_equal(after["cost_counts"], before["cost_counts"])


def test_ratings_on_a_router_without_costs_and_for_unknown_models(embedder: Any) -> None:
    r = Router.paper(3, embedder=embedder).fit(toy_rows(with_cost=False))
    c = r.route(COOK_Q).cluster
    before = _stats(r)
    assert "cost_sums" not in before
    # a cost on the rating is ignored by a router that keeps none
    assert apply_rating(r, Rating(1, "x", "code-model", c, 0.75, cost=3.0))
    after = _stats(r)
    assert "cost_sums" not in after
    j = MODELS.index("code-model")
    assert after["score_sums"][c, j] - before["score_sums"][c, j] == pytest.approx(0.75)
    # a model the router does not know: nothing changes, False
    assert apply_rating(r, Rating(2, "y", "retired-model", c, 1.0)) is False
    again = _stats(r)
    assert r.models_ == MODELS
    for name, value in after.items():
        np.testing.assert_array_equal(again[name], value)


# ------------------------------------------------------------------ retry and deadline


class _Fault(Exception):
    """An error shaped like the openai client's status errors."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"status {status}")
        self.status_code = status
        self.response = httpx.Response(status, headers=headers)


def _failing(faults: list[Exception]) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that raises ``faults`` in order, then answers "ok"; and its call counter."""
    calls = [0]

    async def call() -> str:
        calls[0] += 1
        if faults:
            raise faults.pop(0)
        return "ok"

    return call, calls


def _run_retrying(
    faults: list[Exception], max_retries: int, dl: Deadline | None
) -> tuple[Any, list[float], int]:
    """Run :func:`retrying` under ``dl``; returns (result or the exception, the waits, calls)."""
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    call, calls = _failing(faults)

    async def main() -> Any:
        with within(dl):
            try:
                return await retrying(call, max_retries, sleep=sleep)
            except Exception as e:
                return e

    return asyncio.run(main()), waits, calls[0]


def test_retry_after_is_compared_with_the_time_remaining_not_the_total() -> None:
    clock = FakeClock()
    dl = Deadline(10, clock=clock)
    clock.now += 8  # 2 s of the 10 are left
    assert dl.remaining() == pytest.approx(2.0)
    out, waits, calls = _run_retrying([_Fault(429, {"retry-after": "3"})], 3, dl)
    assert isinstance(out, GaveUp) and calls == 1 and waits == []
    assert out.reason == "Retry-After 3 s is past the request deadline"
    assert isinstance(out.cause, _Fault)
    # a wait equal to the time left is no use either (the answer would come at the deadline)
    out, waits, _ = _run_retrying([_Fault(503, {"retry-after": "2"})], 3, dl)
    assert isinstance(out, GaveUp) and waits == []
    # a wait that fits is waited for, exactly as asked
    out, waits, calls = _run_retrying([_Fault(429, {"retry-after": "1.5"})], 3, dl)
    assert out == "ok" and waits == [1.5] and calls == 2


def test_backoff_past_the_remaining_time_gives_up_with_its_wait() -> None:
    clock = FakeClock()
    dl = Deadline(5, clock=clock)
    clock.now += 4.9  # 0.1 s left: less than any backoff (>= 0.375 s)
    out, waits, _ = _run_retrying([_Fault(500, {})], 3, dl)
    assert isinstance(out, GaveUp) and waits == []
    assert out.reason.startswith("retry in 0.") and out.reason.endswith("past the request deadline")


def test_retry_after_cap_applies_only_without_a_deadline() -> None:
    over = str(MAX_RETRY_AFTER + 1)
    fault = _Fault(429, {"retry-after": over})
    out, waits, _ = _run_retrying([fault], 3, None)
    assert isinstance(out, GaveUp) and out.reason == "Retry-After 61 s is over 60 s"
    assert str(out) == out.reason and out.cause is fault
    out, waits, _ = _run_retrying([_Fault(429, {"retry-after": str(MAX_RETRY_AFTER)})], 3, None)
    assert out == "ok" and waits == [MAX_RETRY_AFTER]
    # an unbounded deadline is no deadline: the cap applies
    out, waits, _ = _run_retrying([_Fault(429, {"retry-after": over})], 3, Deadline(None))
    assert isinstance(out, GaveUp) and "is over 60 s" in out.reason
    # a bounded deadline with room for it: the long wait is honoured
    out, waits, _ = _run_retrying([_Fault(429, {"retry-after": over})], 3, Deadline(3600))
    assert out == "ok" and waits == [61.0]


def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    faults: list[Exception] = [_Fault(500, {"retry-after": "0"}) for _ in range(5)]
    last = faults[2]
    out, waits, calls = _run_retrying(faults, 2, None)
    assert out is last and calls == 3 and waits == [0.0, 0.0]
    out, waits, calls = _run_retrying([_Fault(400, {})], 5, None)  # not retryable
    assert isinstance(out, _Fault) and out.status_code == 400 and calls == 1 and waits == []
    for code, again in [(408, True), (409, True), (429, True), (500, True), (599, True),
                        (404, False), (422, False)]:  # fmt: skip
        out, _, calls = _run_retrying([_Fault(code, {"retry-after": "0"})], 1, None)
        assert (out == "ok") is again and calls == (2 if again else 1), code


def test_what_is_retryable() -> None:
    import openai
    from avengers.transport.retry import retryable

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    assert retryable(openai.APIConnectionError(request=request))
    assert retryable(openai.APITimeoutError(request=request))
    assert not retryable(ValueError("no status at all"))

    class Odd(Exception):
        status_code = "503"  # not a number: not an HTTP status to judge by

    assert not retryable(Odd())
    out, waits, calls = _run_retrying([openai.APIConnectionError(request=request)], 1, None)
    assert out == "ok" and calls == 2 and len(waits) == 1 and 0.375 <= waits[0] <= 0.5


def test_retry_after_header_forms() -> None:
    now = 1_000_000.0
    assert retry_after(_Fault(429, {"retry-after-ms": "1500"})) == 1.5
    assert retry_after(_Fault(429, {"retry-after-ms": "-5"})) == 0.0
    assert retry_after(_Fault(429, {"retry-after-ms": "soon", "retry-after": "4"})) == 4.0
    assert retry_after(_Fault(429, {"retry-after": "-3"})) == 0.0
    date = "Mon, 12 Jan 1970 13:46:50 GMT"  # 1_000_010 s after the epoch
    assert retry_after(_Fault(429, {"retry-after": date}), now=lambda: now) == 10.0
    assert retry_after(_Fault(429, {"retry-after": date}), now=lambda: now + 20) == 0.0
    assert retry_after(_Fault(429, {"retry-after": "whenever"})) is None
    assert retry_after(ValueError("no response")) is None


def test_backoff_schedule() -> None:
    for attempt, top in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 8.0)]:
        for _ in range(20):
            wait = backoff(attempt)
            assert 0.75 * top <= wait <= top, (attempt, wait)


def test_deadline_remaining_time_on_its_clock() -> None:
    clock = FakeClock(50.0)
    dl = Deadline(10, clock=clock)
    assert dl.bounded and dl.seconds == 10.0 and dl.at == 60.0
    clock.now = 53.5
    assert dl.remaining() == 6.5 and dl.timeout() == 6.5 and not dl.expired
    assert repr(dl) == "Deadline(10 s, 6.500 s left)"
    clock.now = 60.0
    assert dl.remaining() == 0.0 and dl.expired
    clock.now = 75.0
    assert dl.remaining() == 0.0 and dl.timeout() == 0.0
    e = dl.exceeded()
    assert isinstance(e, DeadlineExceeded) and e.seconds == 10.0
    assert str(e) == "no answer within the request deadline of 10 s"
    short = Deadline(0.5, clock=clock)  # under a second is still a deadline
    assert short.bounded and short.remaining() == 0.5
    for none in (None, 0, -1):
        free = Deadline(none, clock=clock)
        assert not free.bounded and free.remaining() == math.inf and free.timeout() is None
        assert not free.expired


def test_the_current_deadline_is_scoped() -> None:
    assert current() is None
    outer, inner = Deadline(5), Deadline(1)
    with within(outer) as d:
        assert d is outer and current() is outer
        with within(inner):
            assert current() is inner
        assert current() is outer
    assert current() is None

    async def task() -> Deadline | None:
        set_current(inner)  # a task's own copy of the context
        return current()

    async def main() -> tuple[Deadline | None, Deadline | None]:
        with within(outer):
            got = await asyncio.create_task(task())
            return got, current()

    assert asyncio.run(main()) == (inner, outer)


# ------------------------------------------------------------------ circuit breaker


def test_half_open_window_is_the_cooldown_when_it_is_over_a_second() -> None:
    clock = FakeClock(0.0)
    b = CircuitBreaker(threshold=2, cooldown=5.0, clock=clock)
    b.failure("m", "timeout")
    assert b.state("m") == "closed" and b.admit("m") is None
    b.failure("m", "server_error")
    assert b.state("m") == "open"
    clock.now = 4.0
    assert b.admit("m") == "circuit open after 2 consecutive failures; next probe in 1.0 s"
    assert b.snapshot()["m"] == {"state": "open", "failures": 2, "opened": 1, "probe_in": 1.0}
    clock.now = 3.7654
    assert b.snapshot()["m"]["probe_in"] == 1.235  # to the millisecond
    clock.now = 4.0
    clock.now = 6.0  # past the cool-down, no request yet: the probe is due
    assert b.snapshot()["m"]["probe_in"] == 0.0
    clock.now = 5.0
    assert b.admit("m") is None and b.state("m") == "half_open"  # the probe
    for t in (5.0, 6.5, 9.99):  # the probe has 5 s (the cool-down), not 1 s, to report
        clock.now = t
        assert b.admit("m") == "circuit half-open: a probe request is in flight", t
    clock.now = 10.0
    assert b.admit("m") is None  # the probe never reported: another one may go
    clock.now = 12.0
    assert b.admit("m") is not None


def test_half_open_window_is_at_least_one_second() -> None:
    clock = FakeClock(0.0)
    b = CircuitBreaker(threshold=1, cooldown=0.25, clock=clock)
    b.failure("m", "connection")
    clock.now = 0.2
    assert b.admit("m") is not None
    clock.now = 0.25
    assert b.admit("m") is None
    clock.now = 1.2
    assert b.admit("m") == "circuit half-open: a probe request is in flight"
    clock.now = 1.25
    assert b.admit("m") is None


def test_probe_outcomes_and_uncounted_failures() -> None:
    clock = FakeClock(0.0)
    b = CircuitBreaker(threshold=3, cooldown=2.0, clock=clock)
    for kind in ("client_error", "config", "client_error"):
        b.failure("m", kind)  # faults of the request, not of the endpoint
    assert b.state("m") == "closed" and b.snapshot()["m"]["failures"] == 0
    b.failure("m", "rate_limit")
    b.failure("m", "truncated")
    b.success("m")  # a success resets the count
    b.failure("m", "bad_response")
    b.failure("m", "timeout")
    assert b.state("m") == "closed" and b.snapshot()["m"]["failures"] == 2
    b.failure("m", "timeout")
    assert b.state("m") == "open"
    clock.now = 2.0
    assert b.admit("m") is None
    b.failure("m", "timeout")  # the probe failed: open again, for a full cool-down
    assert b.snapshot()["m"] == {"state": "open", "failures": 4, "opened": 2, "probe_in": 2.0}
    clock.now = 3.9
    assert b.admit("m") == "circuit open after 4 consecutive failures; next probe in 0.1 s"
    clock.now = 4.0
    assert b.admit("m") is None
    b.success("m")
    assert b.snapshot()["m"] == {"state": "closed", "failures": 0, "opened": 2}
    assert b.admit("m") is None and b.admit("other") is None


def test_breaker_settings_are_checked() -> None:
    from avengers.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"threshold must be a whole number >= 1, got 0"):
        CircuitBreaker(threshold=0)
    with pytest.raises(ConfigError, match=r"threshold must be a whole number >= 1, got 2.5"):
        CircuitBreaker(threshold=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"cool-down must be >= 0 seconds, got -1"):
        CircuitBreaker(cooldown=-1)
    with pytest.raises(ConfigError, match=r"cool-down must be >= 0 seconds, got nan"):
        CircuitBreaker(cooldown=float("nan"))
    b = CircuitBreaker(threshold=1, cooldown=0)
    assert (b.threshold, b.cooldown) == (1, 0.0)
    assert repr(b) == "CircuitBreaker(threshold=1, cooldown=0)"


# ------------------------------------------------------------------ scoring labels, shrinkage


def test_carried_by_labels_each_case_exactly() -> None:
    primary = np.array([[0.9, 0.1, 0.0]] * 4)  # the cluster estimate picks model 0
    secondary = np.array(
        [
            [0.8, 0.1, 0.0],  # the classifier agrees
            [0.1, 0.8, 0.0],  # it picks model 1
            [0.1, 0.8, 0.0],
            [0.1, 0.8, 0.0],
        ]
    )
    blended = np.array(
        [
            [0.9, 0.1, 0.0],  # both pick the blend's choice
            [0.6, 0.5, 0.0],  # only the cluster estimate does
            [0.4, 0.5, 0.0],  # only the classifier does
            [0.4, 0.3, 0.5],  # neither
        ]
    )
    assert carried_by(primary, secondary, blended) == ["both", "cluster", "classifier", "blend"]
    assert carried_by(secondary, primary, blended) == ["both", "classifier", "cluster", "blend"]
    assert carried_by(primary[:0], secondary[:0], blended[:0]) == []


def test_shrunk_means_formula() -> None:
    sums = np.array([[3.0, 0.0], [1.0, 2.0]])
    counts = np.array([[4.0, 0.0], [1.0, 2.0]])
    prior = np.array([0.5, 0.25])
    out = shrunk_means(sums, counts, prior, 2.0)
    expected = np.array([[(3 + 1.0) / 6, (0 + 0.5) / 2], [(1 + 1.0) / 3, (2 + 0.5) / 4]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    plain = shrunk_means(sums, counts, prior, 0.0)  # the paper: plain means, prior when empty
    np.testing.assert_allclose(plain, [[0.75, 0.25], [1.0, 1.0]], rtol=0, atol=1e-15)


def test_cluster_scores_honour_shrinkage(embedder: Any) -> None:
    rows = toy_rows(with_cost=False)
    r = Router(n_clusters=3, shrinkage=10.0, classifier_weight=0.0, embedder=embedder).fit(rows)
    a = _stats(r)
    prior = a["global_scores"][None, :]
    expected = (a["score_sums"] + 10.0 * prior) / (a["score_counts"] + 10.0)
    np.testing.assert_allclose(r.cluster_scores(), expected, rtol=0, atol=1e-12)
    plain = a["score_sums"] / a["score_counts"]
    assert np.abs(expected - plain).max() > 0.05  # the two differ enough to tell apart
    # routing reads the shrunk estimate: with one nearest cluster, the estimate is its row
    one = r.set_params(n_nearest=1)
    X = one.embed([COOK_Q])
    est = one.estimate(X)
    np.testing.assert_allclose(est.performance[0], expected[est.nearest[0]], atol=1e-12)
    np.testing.assert_array_equal(est.evidence[0], a["score_counts"][est.nearest[0]])
    # shrinkage is a routing-time setting: 0 gives the plain means without refitting
    r.set_params(shrinkage=0.0)
    np.testing.assert_allclose(r.cluster_scores(), plain, rtol=0, atol=1e-12)
    est0 = r.estimate(X)
    np.testing.assert_allclose(est0.performance[0], plain[est0.nearest[0]], atol=1e-12)
    # the batch path gives the same numbers
    est2 = r.estimate(np.vstack([X, X]))
    np.testing.assert_allclose(est2.performance, np.vstack([est0.performance] * 2), atol=1e-12)


# ------------------------------------------------------------------ voting margin


def test_counts_margin_boundary() -> None:
    assert counts_margin({"a": 3, "b": 1}, 1) is True  # 3 > 1 + 1
    assert counts_margin({"a": 3, "b": 1}, 2) is False  # 2 more votes for b would tie
    assert counts_margin({"a": 3}, 2) is True  # no runner-up: 3 > 0 + 2
    assert counts_margin({"a": 3}, 3) is False
    assert counts_margin({"b": 1, "a": 4, "c": 2}, 1) is True  # order of the dict is irrelevant
    assert counts_margin({"b": 2, "a": 4, "c": 2}, 2) is False
    assert counts_margin({}, 0) is False
