"""Pure vote functions: extraction, majority, tie-breaks, abstentions, medoid, adaptive margin."""

from __future__ import annotations

import numpy as np
import pytest
from avengers.answering.voting import (
    Ballot,
    counts_margin,
    extract_choice,
    extract_number,
    get_extractor,
    infer_answer_type,
    looks_multiple_choice,
    medoid,
    normalize_text,
    vote,
    vote_equivalence,
)
from avengers.exceptions import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is (B).", "B"),
        ("I think it's C. Final answer: D", "D"),
        ("\\boxed{C}", "C"),
        ("A", "A"),
        ("(c)", "C"),
        ("B. Paris is the capital", "B"),
        ("Answer: option a", "A"),
        ("I am not sure at all", None),
        ("", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 1,000.", "1000"),
        ("so we get \\boxed{1000}", "1000"),
        ("1000.0", "1000"),
        ("It costs $42 in total", "42"),
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("The result is 6/8", "0.75"),
        ("\\boxed{\\dfrac{1}{3}}", "1/3"),
        ("one third: 2/6", "1/3"),
        ("x = -7 then the final answer is 12 apples", "12"),
        ("0.50", "0.5"),
        ("50%", "0.5"),
        ("The answer is −3", "-3"),
        ("First 3, then 5, so 8", "8"),
        ("\\boxed{n} where n = 5", "5"),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


def test_number_forms_agree() -> None:
    forms = ["1,000", "1000", "1000.00", "\\boxed{1000}", "The answer is: 1000 meters"]
    assert {extract_number(f) for f in forms} == {"1000"}


def test_normalize_text() -> None:
    assert normalize_text("The Eiffel Tower!") == "eiffel tower"
    assert normalize_text("  eiffel   TOWER ") == "eiffel tower"
    assert normalize_text("Café") == "cafe"
    assert normalize_text("The answer is: Paris.\nBecause...") == "paris"
    assert normalize_text("!!!") is None


def test_majority_wins_and_abstentions_never_do() -> None:
    ballots = [Ballot(None), Ballot(None), Ballot(None), Ballot("4"), Ballot("5"), Ballot("4")]
    r = vote(ballots)
    assert r.answer == "4" and r.counts == {"4": 2, "5": 1}
    assert r.n_votes == 3 and r.n_abstained == 3 and r.share == pytest.approx(2 / 3)
    assert ballots[r.winner].answer == "4"  # type: ignore[index]
    empty = vote([Ballot(None), Ballot("")])
    assert empty.answer is None and empty.winner is None and empty.n_abstained == 2


def test_ties_go_to_model_rank_then_earliest() -> None:
    # equal counts: the answer backed by the better-ranked model wins, whatever the order
    r = vote([Ballot("x", 1, 0), Ballot("y", 0, 1), Ballot("x", 1, 2), Ballot("y", 1, 3)])
    assert r.answer == "y" and r.tie_break == "model rank"
    # same ranks: the answer seen first wins
    r = vote([Ballot("x", 0, 0), Ballot("y", 0, 1), Ballot("y", 0, 2), Ballot("x", 0, 3)])
    assert r.answer == "x" and r.tie_break == "earliest answer"
    r = vote([Ballot("y", 0, 0), Ballot("x", 0, 1), Ballot("y", 0, 2), Ballot("x", 0, 3)])
    assert r.answer == "y"
    # the winning sample is the earliest from the best-ranked model that gave the answer
    r = vote([Ballot("z", 1, 0), Ballot("z", 0, 1), Ballot("q", 1, 2)])
    assert r.winner == 1 and r.tie_break is None


def test_equivalence_vote_groups_by_user_check() -> None:
    progs = ["def f(x): return x+1", "def f(y): return y + 1", "def f(x): return x*2"]

    def same(a: str, b: str) -> bool:
        env_a: dict[str, object] = {}
        env_b: dict[str, object] = {}
        exec(a, env_a)
        exec(b, env_b)
        return all(env_a["f"](i) == env_b["f"](i) for i in range(5))  # type: ignore[operator]

    r = vote_equivalence(progs, [0, 0, 0], same)
    assert r.counts == {"#0": 2, "#2": 1} and r.winner == 0


def test_medoid_picks_the_central_sample() -> None:
    angles = np.radians([0.0, 10.0, 20.0])
    v = np.stack([np.cos(angles), np.sin(angles)], axis=1) * [[1.0], [3.0], [0.5]]
    assert medoid(v) == 1  # the middle direction, whatever the lengths
    with pytest.raises(ValueError):
        medoid(np.zeros((0, 2)))


def test_margin() -> None:
    assert counts_margin({"a": 6, "b": 1}, 4)
    assert not counts_margin({"a": 5, "b": 1}, 4)  # 1 + 4 = 5 would tie
    assert not counts_margin({}, 0)
    assert counts_margin({"a": 1}, 0)


def test_answer_type_inference() -> None:
    mc = "Which is a fruit?\nA) carrot\nB) apple\nC) potato"
    assert looks_multiple_choice(mc) and infer_answer_type(mc) == "choice"
    assert not looks_multiple_choice("What is 2+2?")
    assert infer_answer_type("What is 2+2?", ["4", "The answer is 4", "4."]) == "number"
    wordy = [
        "This is a classic problem: 4 times 8 can be computed as 8 + 8 + 8 + 8, giving 32 in all."
    ] * 3
    assert infer_answer_type("What is 4 times 8?", wordy) == "number"
    assert infer_answer_type("Describe the history of Rome.", wordy) == "text"
    assert infer_answer_type("Capital of France?", ["Paris", "paris.", "It is Paris"]) == "short"
    code = ["```python\ndef f():\n    return 1\n```"] * 3
    assert infer_answer_type("Write f", code) == "code"
    long = ["Bread is made by mixing flour, water and yeast, then kneading and baking " * 2] * 3
    assert infer_answer_type("How is bread made?", long) == "text"


def test_choice_letters_outside_the_options_do_not_count() -> None:
    q = "Pick one\nA) x\nB) y\nC) z\nD) w"
    ex = get_extractor("choice", q)
    assert ex is not None and ex("The answer is (B)") == "B" and ex("E") is None
    assert get_extractor("choice")("E") == "E"  # type: ignore[misc]  # no question: any letter


def test_unknown_answer_type_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown answer type 'letters'"):
        get_extractor("letters")
    f = get_extractor(lambda t: t[:1])
    assert f is not None and f("xyz") == "x"
