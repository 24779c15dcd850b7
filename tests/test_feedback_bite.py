"""The in-memory feedback store and the rating checks with exact results: bounds, sequence
numbers, updates allowed or not, the messages of refused ratings (``benchmarks/mutation.py
feedback``)."""

from __future__ import annotations

import pytest
from avengers.stores.feedback import (
    AlreadyRatedError,
    FeedbackError,
    MemoryFeedbackStore,
    Rating,
    UnknownResponseError,
    check_rating,
    rating_reply,
)


def test_check_rating() -> None:
    assert check_rating(1) == (1.0, None) and check_rating(0.25, 3) == (0.25, 3.0)
    assert check_rating(0.0, 0) == (0.0, 0.0)
    for score, message in [
        (True, "score must be a number in [0, 1], got True"),
        ("0.5", "score must be a number in [0, 1], got '0.5'"),
        (float("nan"), "score must be a number in [0, 1], got nan"),
        (1.5, "score must be in [0, 1], got 1.5"),
        (-0.5, "score must be in [0, 1], got -0.5"),
    ]:
        with pytest.raises(FeedbackError) as e:
            check_rating(score)
        assert str(e.value) == message
    for cost in (True, "1", float("inf"), float("nan"), -1):
        with pytest.raises(FeedbackError) as e:
            check_rating(0.5, cost)
        assert str(e.value) == f"cost must be a finite number >= 0, got {cost!r}"
    assert check_rating(0.5, 1e12) == (0.5, 1e12)
    with pytest.raises(FeedbackError) as e:
        check_rating(0.5, 1e308)  # finite, but it would overflow the cost sums to inf
    assert str(e.value) == "cost must be at most 1e+12 per call, got 1e+308"


def test_memory_store_rates_once_unless_updates_are_allowed() -> None:
    s = MemoryFeedbackStore()
    assert repr(s) == "MemoryFeedbackStore(max_responses=10000)"
    s.remember("r1", "m1", 2)
    s.remember("r2", "m2", 0)
    first = s.rate("r1", 0.5, 1.5)
    assert first == Rating(1, "r1", "m1", 2, 0.5, 1.5)
    with pytest.raises(AlreadyRatedError) as e:
        s.rate("r1", 1.0)
    assert str(e.value) == "response 'r1' was rated already"
    with pytest.raises(UnknownResponseError) as e2:
        s.rate("nope", 1.0)
    assert str(e2.value) == "no response with id 'nope'"
    with pytest.raises(FeedbackError):
        s.rate("r2", 2.0)  # checked before anything is recorded
    assert s.rate("r2", 0.0) == Rating(2, "r2", "m2", 0, 0.0, None)
    added = s.add("m3", 1, 0.75, cost=0.5)
    assert added == Rating(3, None, "m3", 1, 0.75, 0.5)
    assert [r.seq for r in s.ratings()] == [1, 2, 3]
    assert [r.seq for r in s.ratings(after=1)] == [2, 3] and s.ratings(after=3) == []
    again = MemoryFeedbackStore(allow_updates=True)
    again.remember("r", "m", 0)
    assert [again.rate("r", x).seq for x in (0.1, 0.9, 0.4)] == [1, 2, 3]
    # remembering a response again starts it afresh
    s.remember("r1", "m9", 4)
    assert s.rate("r1", 1.0) == Rating(4, "r1", "m9", 4, 1.0, None)
    s.close()


def test_memory_store_bounds() -> None:
    s = MemoryFeedbackStore(max_responses=2, max_ratings=3)
    for i in range(3):
        s.remember(f"r{i}", "m", i)
    with pytest.raises(UnknownResponseError):
        s.rate("r0", 1.0)  # the oldest was forgotten
    s.remember("r1", "m", 1)  # remembered again: now the newest
    s.remember("r3", "m", 3)  # r2 goes, not r1
    assert s.rate("r1", 1.0).cluster == 1
    with pytest.raises(UnknownResponseError):
        s.rate("r2", 1.0)
    for _ in range(4):
        s.add("m", 0, 0.5)
    assert [r.seq for r in s.ratings()] == [3, 4, 5]  # the last three kept, numbers go on
    exact = MemoryFeedbackStore(max_responses=1, max_ratings=1)
    exact.remember("a", "m", 0)
    assert exact.rate("a", 1.0).seq == 1 and len(exact.ratings()) == 1


def test_memory_store_default_bounds_and_prune() -> None:
    s = MemoryFeedbackStore()
    assert (s.max_responses, s.max_ratings) == (10_000, 10_000)
    for _ in range(10_001):
        s.add("m", 0, 1.0)
    kept = s.ratings()
    assert (len(kept), kept[0].seq, kept[-1].seq) == (10_000, 2, 10_001)
    assert s.prune() == 0 and s.prune(older_than=0.0) == 0  # nothing to prune: bounded already
    assert len(s.ratings()) == 10_000


def test_rating_reply() -> None:
    r = Rating(7, "chatcmpl-1", "m", 3, 0.5, 2.0)
    assert rating_reply(r) == {"object": "feedback", "id": "chatcmpl-1", "seq": 7, "model": "m",
                               "cluster": 3, "score": 0.5, "applied": True}  # fmt: skip
