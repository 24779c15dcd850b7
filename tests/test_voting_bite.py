"""The vote and its rules with exact results: counts, winners, tie-breaks, shares, extraction
forms, answer-type inference, and the vote step of answering (:mod:`avengers.answering.tally`) from samples
to a verdict (``benchmarks/mutation.py voting tally``)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from avengers.answering.config import FIRST_SAMPLE, NO_VALID_SAMPLE, SamplingConfig
from avengers.answering.tally import count, decide, extractor_for, resolve_type
from avengers.answering.toolcalls import VoteKey
from avengers.answering.voting import (
    Ballot,
    VoteResult,
    extract_choice,
    extract_number,
    get_extractor,
    infer_answer_type,
    looks_multiple_choice,
    medoid,
    normalize_text,
    option_letters,
    states_answer,
    vote,
    vote_equivalence,
)
from avengers.exceptions import ConfigError

MC = "Which is a fruit?\nA) carrot\nB) apple\nC) potato\nD) leek"


# ------------------------------------------------------------------ vote


def test_vote_counts_winner_and_order() -> None:
    r = vote([Ballot("b", 2, 0), Ballot("a", 1, 1), Ballot("b", 0, 2), Ballot("c", 0, 3),
              Ballot(None, 0, 4), Ballot("b", 1, 5)])  # fmt: skip
    assert r.answer == "b" and r.winner == 2  # the best-ranked model's "b"
    assert list(r.counts.items()) == [("b", 3), ("a", 1), ("c", 1)]  # most votes first
    assert (r.n_votes, r.n_abstained, r.tie_break) == (5, 1, None)
    assert r.share == pytest.approx(3 / 5)
    assert VoteResult(None, None).share == 0.0
    assert VoteResult("x", 0, {"x": 0}, 0).share == 0.0


def test_tie_breaks_exactly() -> None:
    # a tie of two, one backed by rank 0: "model rank"
    r = vote([Ballot("x", 1, 0), Ballot("y", 0, 1), Ballot("x", 2, 2), Ballot("y", 3, 3)])
    assert (r.answer, r.winner, r.tie_break) == ("y", 1, "model rank")
    # three tied, two of them at the best rank: the earlier of those two
    r = vote([Ballot("z", 1, 0), Ballot("y", 0, 5), Ballot("x", 0, 2)])
    assert (r.answer, r.winner, r.tie_break) == ("x", 2, "earliest answer")
    # the earliest order counts, not the position in the list
    r = vote([Ballot("p", 0, 9), Ballot("q", 0, 3), Ballot("p", 0, 1), Ballot("q", 0, 7)])
    assert (r.answer, r.winner, r.tie_break) == ("p", 2, "earliest answer")
    # the winning sample: best rank first, then earliest order among that rank
    r = vote([Ballot("w", 1, 0), Ballot("w", 0, 4), Ballot("w", 0, 2)])
    assert (r.winner, r.tie_break) == (2, None)


def test_equivalence_groups_and_ranks() -> None:
    texts = ["1", "", "01", "2", "002", "3"]
    r = vote_equivalence(texts, [2, 0, 1, 0, 0, 1], lambda a, b: int(a) == int(b))
    assert r.counts == {"#0": 2, "#3": 2, "#5": 1} and r.n_abstained == 1
    assert (r.answer, r.winner, r.tie_break) == ("#3", 3, "model rank")


def test_medoid_rules() -> None:
    v = np.array([[1.0, 0.0], [0.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    assert medoid(v) == 2  # a zero vector counts as dissimilar to all
    with pytest.raises(ValueError, match="non-empty 2-D array"):
        medoid(np.array([1.0, 2.0]))


# ------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{ (C) }", "C"),
        ("I think B. Final answer: option d", "D"),
        ("The answer is [b]", "B"),
        ("The answer is: [b]", None),
        ("**C**", "C"),
        ("(a)", "A"),
        ("  e. ", "E"),
        ("Apples are (B) and (C)", "C"),
        ("Kale is nice", None),
        ("", None),
        ("K", None),
    ],
)
def test_extract_choice_forms(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("\\boxed{\\dfrac{1}{3}}", "1/3"),
        ("so \\boxed{x = 12} done 7", "12"),
        ("\\boxed{nothing} but 5", "5"),
        ("The answer is 1,234.50 dollars, not 7", "1234.5"),
        ("Final answer: −3", "-3"),
        ("It costs $ 40 or 50%", "0.5"),
        ("about .5 of it", "0.5"),
        ("6/0 and then", None),
        ("2/4", "0.5"),
        ("no numbers", None),
        ("", None),
        ("1 then 2\nthe answer is\n3", "3"),
    ],
)
def test_extract_number_forms(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


def test_normalize_text_forms() -> None:
    assert normalize_text("The answer is: The Éiffel  Tower!\nmore") == "eiffel tower"
    assert normalize_text("An apple, a pear") == "apple pear"
    assert normalize_text("...") is None and normalize_text("") is None


def test_option_letters_and_extractors() -> None:
    assert option_letters(MC) == {"A", "B", "C", "D"}
    assert option_letters("Only A) this") == set()
    ex = get_extractor("choice", MC)
    assert ex is not None and ex("(B)") == "B" and ex("(E)") is None
    assert get_extractor("choice", "no options here") is extract_choice
    assert get_extractor("number") is extract_number and get_extractor("short") is normalize_text
    assert get_extractor("text") is None and get_extractor("code") is None


def test_answer_type_inference_branches() -> None:
    assert infer_answer_type(MC, ["whatever"]) == "choice"
    assert infer_answer_type("Q", []) == "text"
    assert infer_answer_type("Q", ["", ""]) == "text"
    code = ["def f(x):\n    return x", "def g(): pass", "plain words"]
    assert infer_answer_type("Q", code) == "code"  # 2 of 3 hold code
    assert infer_answer_type("Q", code[1:]) == "short"  # 1 of 2 is not a majority
    # the question asks for a number and most samples give one, however long
    long = ["After a long and careful look at the whole question, the total comes to 12 in all."]
    assert infer_answer_type("How many eggs?", long * 2 + ["none"]) == "number"
    assert infer_answer_type("Tell me about eggs.", long * 3) == "text"
    # short samples with numbers: a number without the question asking for one
    assert infer_answer_type("Eggs?", ["12", "12 eggs", "twelve"]) == "number"
    assert infer_answer_type("Eggs?", ["12", "twelve", "a dozen"]) == "short"


def test_vote_edges_exactly() -> None:
    # every sample abstains: no winner, no votes (0, not None), both abstentions counted
    assert vote([Ballot(None), Ballot("")]) == VoteResult(None, None, {}, 0, 2)
    # equal ranks and orders (the defaults): the first ballot carrying the answer is the winner
    assert vote([Ballot("a"), Ballot("a"), Ballot("b")]).winner == 0
    # a label per text and a rank per text: a rank missing is an error, not a shorter vote
    with pytest.raises(ValueError):
        vote_equivalence(["1", "2"], [0], lambda a, b: a == b)


def test_medoid_edges() -> None:
    assert medoid(np.array([[3.0, 4.0]])) == 0  # one row is its own medoid
    with pytest.raises(ValueError, match=r"^medoid needs a non-empty 2-D array$"):
        medoid(np.zeros((0, 3)))
    # float32 embeddings a hair apart: the middle one is the medoid, a difference that float32
    # sums round away (all three come to 3.0), so the similarities are worked out in float64
    d = 1e-4
    close = np.array([[1.0, 0.0], [1.0, d], [1.0, 2 * d]], dtype=np.float32)
    assert medoid(close) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{\\frac{3}{4}} so not 7 apples", "0.75"),  # nested braces close the box
        ("\\boxed{12}7", "12"),  # the box ends at its brace
        ("\\boxed{12", "12"),  # an unclosed box is not a box; the last number stands
        ("it fell to - 5 degrees", "-5"),  # a sign apart from its digits
        ("The answer is about 12, not 15.", "12"),  # the first number of that line
        ("The answer is below.\n7 apples and 9 pears", "9"),  # only that line; else the last
    ],
)
def test_extract_number_edges(text: str, expected: str) -> None:
    assert extract_number(text) == expected


def test_extract_choice_edges() -> None:
    assert extract_choice("X") is None  # a lone letter outside A-J
    assert extract_choice("AX") is None and extract_choice("XB") is None  # a word, not a letter


def test_states_answer() -> None:
    assert states_answer("so \\boxed{3}") and states_answer("The answer is 4")
    assert not states_answer("I think 4") and not states_answer("")


def test_option_letters_at_two_and_the_unknown_type_message() -> None:
    two = "Is it safe?\nA) yes\nB) no"
    assert option_letters(two) == {"A", "B"} and looks_multiple_choice(two)
    with pytest.raises(ConfigError) as e:
        get_extractor("prose")
    assert str(e.value) == (
        "unknown answer type 'prose'; use one of auto, choice, number, short, text, code "
        "or pass a function"
    )


def test_answer_type_thresholds() -> None:
    # the question asks for a number: one of two samples is not "most"
    assert infer_answer_type("How many apples?", ["3 apples", "I am not sure"]) == "short"
    # no such question: half the samples numeric is not most; half stating is not most
    assert infer_answer_type("Apples?", ["12", "no idea"]) == "short"
    unstated = "We looked everywhere and counted twelve, so 12"  # numeric, 46 chars, not stated
    assert infer_answer_type("Apples?", ["12", unstated]) == "short"
    # a long sample that says "the answer is" (no box) states its answer
    said = "After working through every step carefully, the answer is 12."
    assert infer_answer_type("Apples?", [said, said]) == "number"
    # under 40 characters counts as stating; 40 does not
    forty = "We counted them all and found 17 apples."
    assert len(forty) == 40 and infer_answer_type("Apples?", [forty]) == "short"
    # short text is at most 80 characters
    assert infer_answer_type("Q", ["w" * 80]) == "short"
    assert infer_answer_type("Q", ["w" * 81]) == "text"


# ------------------------------------------------------------------ the vote step (tally)


async def _embed(texts: list[str]) -> np.ndarray:
    """Sample 1 is the medoid: the others point two ways, it points between them."""
    rows = {0: [1.0, 0.0], 1: [0.7, 0.7], 2: [0.0, 1.0]}
    return np.array([rows.get(i, [0.5, 0.5]) for i in range(len(texts))])


def _decide(texts: list[str], ranks: list[int], cfg: SamplingConfig, q: str = "Q") -> object:
    return asyncio.run(decide(texts, ranks, cfg, q, _embed))


def test_resolve_type_and_extractor() -> None:
    assert resolve_type(SamplingConfig(answer_type="number"), "Q", []) == "number"
    assert resolve_type(SamplingConfig(), MC, ["B"]) == "choice"
    assert resolve_type(SamplingConfig(answer_type=lambda t: t), "Q", []) == "custom"
    key = VoteKey({"tools": [{"function": {"name": "f"}}]})
    assert resolve_type(SamplingConfig(answer_type=key), "Q", []) == "tool_call"
    f = SamplingConfig(answer_type=str.upper)
    assert extractor_for(f, "Q", []) is str.upper
    ex = extractor_for(SamplingConfig(answer_type="choice"), MC, [])
    assert ex is not None and ex("(E)") is None


def test_count_methods() -> None:
    one = SamplingConfig(n_samples=1)
    res, method, atype = count(["42"], [0], one, "How many?")
    assert (method, atype, res.winner, res.n_votes, res.n_abstained) == (
        "single",
        "number",
        0,
        0,
        0,
    )
    # one sample from several per model is still voted on
    res, method, _ = count(["42"], [0], SamplingConfig(n_samples=3), "How many?")
    assert method == "majority" and res.counts == {"42": 1}
    code = ["```py\nprint(1)\n```", "```py\nprint(2)\n```", "```py\nprint(3)\n```"]
    res, method, atype = count(code, [1, 0, 0], SamplingConfig(), "Write it")
    assert (method, atype, res.winner, res.n_abstained) == (FIRST_SAMPLE, "code", 1, 3)
    eq = SamplingConfig(answer_type="code", equivalence=lambda a, b: a[-1] == b[-1])
    res, method, _ = count(["a 1", "b 1", "c 2"], [0, 0, 0], eq, "Q")
    assert method == "equivalence" and res.counts == {"#0": 2, "#2": 1}
    res, method, atype = count(["long story one", "another"], [0, 0],
                               SamplingConfig(answer_type="text"), "Q")  # fmt: skip
    assert (method, atype, res.winner) == ("medoid", "text", None)
    res, method, _ = count(["no digits", "none"], [0, 0], SamplingConfig(answer_type="number"), "Q")
    assert method == "medoid" and res.n_abstained == 2


def test_decide_reads_the_question() -> None:
    # "auto" infers the type from the question: with options listed, letters are voted on
    v = _decide(["(B)", "B.", "(C)"], [0, 0, 0], SamplingConfig(), MC)
    assert (v.answer_type, v.answer, v.votes) == ("choice", "B", {"B": 2, "C": 1})


def test_decide_verdicts() -> None:
    v = _decide(["It is 4", "4", "5"], [0, 1, 0], SamplingConfig(answer_type="number"))
    assert (v.method, v.winner, v.answer, v.votes) == ("majority", 0, "4", {"4": 2, "5": 1})
    assert v.extracted == ["4", "4", "5"] and v.notes == []
    v = _decide(["5", "4"], [1, 0], SamplingConfig(answer_type="number"))
    assert (v.winner, v.answer, v.notes) == (1, "4", ["tie broken by model rank"])
    v = _decide(["alpha", "beta", "gamma"], [0, 0, 0], SamplingConfig(answer_type="number"))
    assert (v.method, v.winner, v.answer) == ("medoid", 1, None)
    assert v.notes == [
        "no sample yielded a number answer: the most typical sample was chosen",
        "no extractable answer to vote on: chose the sample most similar to the others "
        "(embedding medoid)",
    ]
    assert v.extracted == [None, None, None]
    v = _decide(["one", "two", "three"], [0, 0, 0], SamplingConfig(answer_type="text"))
    assert (v.method, v.winner) == ("medoid", 1) and len(v.notes) == 1
    v = _decide(["only"], [0], SamplingConfig(answer_type="number", n_samples=2))
    assert (v.method, v.winner) == ("single", 0)
    assert v.notes == ["no sample yielded a number answer: the most typical sample was chosen"]


def test_decide_over_tool_calls_and_json() -> None:
    tools = {"tools": [{"function": {"name": "add", "parameters": {"type": "object"}}}]}
    key = VoteKey(tools, text_type="number")
    cfg = SamplingConfig(answer_type=key)
    # text replies win the vote: they are voted on again, as numbers
    v = _decide(["It is 4", "no, 5", "4"], [1, 0, 0], cfg)
    assert (v.method, v.answer_type, v.winner, v.answer) == ("majority", "number", 2, "4")
    assert v.votes == {"4": 2, "5": 1} and v.extracted == ["4", "5", "4"]
    assert v.notes == [
        "3 of 3 samples replied in text rather than calling a tool, the most of any answer "
        "(votes {'(text reply)': 3}): the text replies were voted on"
    ]
    v = _decide(["no call", "still none"], [1, 0], cfg)
    assert (v.method, v.winner, v.answer) == ("medoid", 1, None) and len(v.notes) == 3
    # without a text type, "a text reply" is the answer
    plain = SamplingConfig(answer_type=VoteKey(tools, text_type=None))
    v = _decide(["It is 4", "no, 5", "4"], [1, 0, 0], plain)
    assert (v.method, v.answer_type, v.winner, v.answer) == (
        "majority",
        "tool_call",
        1,
        "(text reply)",
    )
    js = VoteKey({"response_format": {"type": "json_object"}})
    v = _decide(['{"a": 1}', '{"a":1}', '{"a": 2}'], [0, 0, 0], SamplingConfig(answer_type=js))
    assert (v.method, v.winner, v.answer_type) == ("majority", 0, "json")
    assert v.votes == {v.answer: 2, v.extracted[2]: 1}
    v = _decide(["{oops"], [0], SamplingConfig(answer_type=js, n_samples=1))
    assert v.method == "single" and v.winner == 0
    v = _decide(["[1", "{]"], [1, 0], SamplingConfig(answer_type=js))
    assert (v.method, v.winner, v.answer) == (NO_VALID_SAMPLE, 1, None)
    assert v.extracted == [None, None] and v.votes == {}
    assert v.notes == [
        "no sample gave a valid JSON output: the best-ranked first sample was returned"
    ]
