"""The vote step's handling of samples cut off at the token limit and its verdicts' exact
notes and counts (:mod:`avengers.answering.tally`; ``benchmarks/mutation.py tally``). Fast: no
model, no server."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from avengers.answering.config import FIRST_SAMPLE, NO_VALID_SAMPLE, SamplingConfig
from avengers.answering.tally import (
    Verdict,
    count,
    counted,
    cut_note,
    decide,
    is_cut,
    stopping_rule,
    weigh_cut,
)
from avengers.answering.toolcalls import TOOL_MARK, VoteKey
from avengers.answering.voting import VoteResult, extract_number

NUMBER = SamplingConfig(answer_type="number")
TEXTS = ["so 4", "The answer is 5", "I ran out of", "... and then 4"]
ANSWERS = ["4", "5", None, "4"]
CUT = [False, True, True, True]


async def _embed(texts: list[str]) -> np.ndarray:
    return np.array([[1.0, float(i)] for i in range(len(texts))])


def _decide(texts: list[str], cfg: SamplingConfig, cut: list[bool], q: str = "Q") -> Verdict:
    return asyncio.run(decide(texts, [0] * len(texts), cfg, q, _embed, cut))


def test_is_cut() -> None:
    assert is_cut("length") and not is_cut("stop") and not is_cut(None)


def test_weigh_cut_under_each_rule() -> None:
    assert weigh_cut(ANSWERS, TEXTS, CUT, "count") == (ANSWERS, 0)
    assert weigh_cut(ANSWERS, TEXTS, CUT, "exclude") == (["4", None, None, None], 2)
    # a complete sample answered: the cut ones' answers go
    assert weigh_cut(ANSWERS, TEXTS, CUT, "fallback") == (["4", None, None, None], 2)
    assert weigh_cut(ANSWERS, TEXTS, CUT) == (["4", None, None, None], 2)  # the default
    # no complete sample answered: the cut ones are all there is
    lone = [None, "5", None, "4"]
    assert weigh_cut(lone, TEXTS, CUT, "fallback") == (lone, 0)
    assert weigh_cut(lone, TEXTS, CUT, "exclude") == ([None, None, None, None], 2)
    # explicit: a cut sample that states its answer keeps it
    assert weigh_cut(ANSWERS, TEXTS, CUT, "explicit") == (["4", "5", None, None], 1)
    # nothing known to be cut
    assert weigh_cut(ANSWERS, TEXTS, [], "exclude") == (ANSWERS, 0)
    assert weigh_cut(ANSWERS, TEXTS, [False] * 4, "exclude") == (ANSWERS, 0)


def test_cut_notes() -> None:
    head = "3 of 4 samples were cut off at the token limit (finish_reason 'length')"
    assert cut_note(0, 0, 4, True) is None
    assert cut_note(2, 3, 4, True) == (
        f"{head}: the 2 answer(s) extracted from them were not counted in the vote"
    )
    assert cut_note(0, 3, 4, True) == f"{head}: counted, as no complete sample gave an answer"
    assert cut_note(2, 3, 4, False) == head
    assert cut_note(0, 1, 1, False) == (
        "the answer was cut off at the token limit (finish_reason 'length')"
    )


def test_stopping_rule() -> None:
    assert stopping_rule() == "exclude" and stopping_rule("fallback") == "exclude"
    assert [stopping_rule(r) for r in ("count", "exclude", "explicit")] == [
        "count",
        "exclude",
        "explicit",
    ]


def test_counted_passes_its_rule_on() -> None:
    assert counted(extract_number, TEXTS, CUT) == (["4", None, None, None], 2)
    assert counted(extract_number, TEXTS, CUT, "count") == (ANSWERS, 0)
    assert counted(extract_number, TEXTS, CUT, "explicit") == (["4", "5", None, None], 1)
    js = VoteKey({"response_format": {"type": "json_object"}})
    assert counted(js, ['{"a": 1}', "{"], [True, True], "exclude") == (['{"a":1}', None], 0)


def test_count_results_exactly() -> None:
    one = SamplingConfig(n_samples=1)
    assert count(["42"], [0], one, "How many?") == (VoteResult(None, 0, {}, 0, 0), "single",
                                                      "number")  # fmt: skip
    assert count(["none", "nil"], [0, 0], NUMBER, "Q") == (
        VoteResult(None, None, {}, 0, 2), "medoid", "number"
    )  # fmt: skip
    with pytest.raises(ValueError):
        count(["4", "5"], [0], NUMBER, "Q")  # a rank per sample
    # a cut sample's answer does not count while a complete one answers
    res, method, _ = count(TEXTS, [0, 0, 0, 0], NUMBER, "Q", CUT)
    assert (method, res.answer, res.counts, res.n_abstained) == ("majority", "4", {"4": 1}, 3)


def test_decide_with_cut_samples() -> None:
    v = _decide(TEXTS, NUMBER, CUT)
    assert (v.method, v.winner, v.answer, v.votes) == ("majority", 0, "4", {"4": 1})
    assert v.extracted == ["4", None, None, None]
    assert v.notes == [
        "3 of 4 samples were cut off at the token limit (finish_reason 'length'): the 2 "
        "answer(s) extracted from them were not counted in the vote"
    ]
    # nothing extractable at all: the medoid, and the cut samples were looked at (counted)
    v = _decide(["alpha", "beta", "gamma"], NUMBER, [True, False, False])
    assert v.method == "medoid" and v.notes[0] == (
        "1 of 3 samples were cut off at the token limit (finish_reason 'length'): counted, as "
        "no complete sample gave an answer"
    )


def test_decide_over_keys_notes_exactly() -> None:
    js = SamplingConfig(answer_type=VoteKey({"response_format": {"type": "json_object"}}))
    v = _decide(['{"a": 1}', '{"a": 2}'], js, [])
    assert (v.winner, v.notes) == (0, ["tie broken by earliest answer"])
    v = _decide(['{"a": 1}', '{"a": 1}'], js, [])
    assert (v.winner, v.notes) == (0, [])
    v = _decide(['{"a": 1}'], SamplingConfig(answer_type=js.answer_type, n_samples=1), [])
    assert (v.method, v.notes) == ("single", [])
    tools = VoteKey({"tools": [{"function": {"name": "add", "parameters": {"type": "object"}}}]})
    bad = TOOL_MARK + json.dumps([{"name": "sub", "arguments": "{}"}])  # not a tool offered
    v = _decide([bad, bad], SamplingConfig(answer_type=tools), [])
    assert (v.method, v.winner) == (NO_VALID_SAMPLE, 0)
    assert v.notes == [
        "no sample gave a valid tool call: the best-ranked first sample was returned"
    ]


def test_text_replies_are_voted_on_with_the_question() -> None:
    """When text replies win a tool vote, they are voted on again with the question: with
    ``auto``, a question listing options votes on their letters."""
    mc = "Which is a fruit?\nA) carrot\nB) apple\nC) leek"
    tools = VoteKey({"tools": [{"function": {"name": "add", "parameters": {"type": "object"}}}]},
                    text_type="auto")  # fmt: skip
    v = _decide(["I pick (B)", "B.", "(C) surely"], SamplingConfig(answer_type=tools), [], mc)
    assert (v.answer_type, v.answer, v.votes) == ("choice", "B", {"B": 2, "C": 1})


def test_more_exact_results() -> None:
    # the cut marks must match the samples one to one
    with pytest.raises(ValueError):
        weigh_cut(ANSWERS, TEXTS, [True], "exclude")
    with pytest.raises(ValueError):
        weigh_cut(ANSWERS, TEXTS, [False, True], "fallback")
    assert cut_note(0, 1, 2, False) == (
        "1 of 2 samples were cut off at the token limit (finish_reason 'length')"
    )
    code = ["```py\nprint(1)\n```", "```py\nprint(2)\n```", "```py\nprint(3)\n```"]
    assert count(code, [1, 0, 0], SamplingConfig(), "Write it") == (
        VoteResult(None, 1, {}, 0, 3), FIRST_SAMPLE, "code"
    )  # fmt: skip
    assert count(["a b", "c d"], [0, 0], SamplingConfig(answer_type="text"), "Q") == (
        VoteResult(None, None, {}, 0, 2), "medoid", "text"
    )  # fmt: skip
    # "auto" reads the samples too: most give a number and the question asks for one
    v = _decide(["4", "it is 4", "5"], SamplingConfig(), [], "How many?")
    assert (v.answer_type, v.answer, v.votes) == ("number", "4", {"4": 2, "5": 1})
    js = VoteKey({"response_format": {"type": "json_object"}})
    v = _decide(["{oops"], SamplingConfig(answer_type=js, n_samples=1), [])
    assert v == Verdict("single", "json", 0, None, {}, [None], [])


def test_a_text_re_vote_keeps_the_cut_marks() -> None:
    tools = VoteKey({"tools": [{"function": {"name": "add", "parameters": {"type": "object"}}}]},
                    text_type="number")  # fmt: skip
    v = _decide(["so 4", "The answer is 5", "then 5"], SamplingConfig(answer_type=tools),
                [False, True, True])  # fmt: skip
    assert (v.answer, v.votes) == ("4", {"4": 1})
    assert v.notes[-1] == (
        "2 of 3 samples were cut off at the token limit (finish_reason 'length'): the 2 "
        "answer(s) extracted from them were not counted in the vote"
    )


def test_full_run_survivors() -> None:
    # the fallback check refuses cut marks that do not match the samples, too (here no
    # complete sample answers among those it pairs)
    with pytest.raises(ValueError):
        weigh_cut([None, "5", "4"], TEXTS[:3], [True], "fallback")
    # an equivalence check votes on text as well as code
    same = SamplingConfig(answer_type="text", equivalence=lambda a, b: a.lower() == b.lower())
    res, method, atype = count(["Yes", "no", "yes"], [0, 0, 0], same, "Q")
    assert (method, atype, res.winner) == ("equivalence", "text", 0)
    # a single cut sample is not voted on: the note says it was cut, nothing about counting
    v = _decide(["so 4"], SamplingConfig(answer_type="number", n_samples=1), [True])
    assert (v.method, v.extracted) == ("single", [None])
    assert v.notes == ["the answer was cut off at the token limit (finish_reason 'length')"]
    # no valid tool call: the verdict keeps the key's answer type
    tools = VoteKey({"tools": [{"function": {"name": "add", "parameters": {"type": "object"}}}]})
    bad = TOOL_MARK + json.dumps([{"name": "sub", "arguments": "{}"}])
    v = _decide([bad, bad], SamplingConfig(answer_type=tools), [])
    assert (v.method, v.answer_type) == (NO_VALID_SAMPLE, "tool_call")
