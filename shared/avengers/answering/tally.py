"""The vote step of answering: from the samples drawn to a complete :class:`Verdict` -- which
sample wins, by what method, with what votes and notes (the rules are in :mod:`avengers.answering.voting`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .config import FIRST_SAMPLE, NO_VALID_SAMPLE, SamplingConfig, VoteMethod
from .toolcalls import TEXT_REPLY, VoteKey, is_tool_ballot
from .voting import (
    Ballot,
    Extractor,
    VoteResult,
    get_extractor,
    infer_answer_type,
    medoid,
    states_answer,
    vote,
    vote_equivalence,
)

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
"""Embeds sample texts, for choosing the medoid when there is nothing to vote on."""

CutRule = Literal["count", "exclude", "fallback", "explicit"]
CUT_RULES: tuple[CutRule, ...] = ("count", "exclude", "fallback", "explicit")
CUT_RULE: CutRule = "fallback"
"""How a sample cut off at the token limit (``finish_reason`` ``length``) votes: ``count`` as any
other; ``exclude`` never; ``fallback`` only when no complete sample yields an answer;
``explicit`` only when it states its answer (``\\boxed{}``, "the answer is"), not by the
last-number fallback. Chosen by ``benchmarks/cut_votes.py`` on real samples of the two local
models (docs/benchmarks.md, "Samples cut off at the token limit")."""


def is_cut(finish_reason: str | None) -> bool:
    """Whether a sample ended at the token limit rather than where the model chose to stop."""
    return finish_reason == "length"


def weigh_cut(
    answers: Sequence[str | None],
    texts: Sequence[str],
    cut: Sequence[bool],
    rule: CutRule = CUT_RULE,
) -> tuple[list[str | None], int]:
    """The extracted ``answers`` that count in the vote under ``rule``, and how many cut
    samples' answers were dropped. ``cut`` may be empty (no sample known to be cut)."""
    out = list(answers)
    if not any(cut) or rule == "count":
        return out, 0
    if rule == "fallback" and not any(a for a, c in zip(answers, cut, strict=True) if not c):
        return out, 0  # no complete sample gave an answer: the cut ones are all there is
    dropped = 0
    for i, (a, t, c) in enumerate(zip(answers, texts, cut, strict=True)):
        if c and a and not (rule == "explicit" and states_answer(t)):
            out[i] = None
            dropped += 1
    return out, dropped


def cut_note(dropped: int, n_cut: int, n: int, voted: bool) -> str | None:
    """The account's note on samples cut off at the token limit (None: none were). ``voted``:
    whether answers were extracted and voted on."""
    if not n_cut:
        return None
    head = (
        f"{n_cut} of {n} samples were cut off at the token limit (finish_reason 'length')"
        if n > 1
        else "the answer was cut off at the token limit (finish_reason 'length')"
    )
    if not voted:
        return head
    if dropped:
        return f"{head}: the {dropped} answer(s) extracted from them were not counted in the vote"
    return f"{head}: counted, as no complete sample gave an answer"


def resolve_type(cfg: SamplingConfig, question: str, texts: Sequence[str]) -> str:
    """The answer type voting uses: ``custom`` for a function, inferred for ``auto``."""
    if isinstance(cfg.answer_type, VoteKey):
        return cfg.answer_type.answer_type
    if callable(cfg.answer_type):
        return "custom"
    if cfg.answer_type == "auto":
        return infer_answer_type(question, texts)
    return str(cfg.answer_type)


def extractor_for(cfg: SamplingConfig, question: str, texts: Sequence[str]) -> Extractor | None:
    """The function that extracts a comparable answer from a sample (None: nothing to extract)."""
    if callable(cfg.answer_type):
        return cfg.answer_type
    return get_extractor(resolve_type(cfg, question, texts), question)


def count(
    texts: Sequence[str],
    ranks: Sequence[int],
    cfg: SamplingConfig,
    question: str,
    cut: Sequence[bool] = (),
) -> tuple[VoteResult, VoteMethod, str]:
    """Count the votes of samples ``texts`` from models of ``ranks``: the vote, the method that
    decides the winner, and the answer type. ``cut`` marks samples cut off at the token limit;
    their extracted answers count as :data:`CUT_RULE` says."""
    atype = resolve_type(cfg, question, texts)
    n = len(texts)
    if n == 1 and cfg.samples_per_model == 1:
        return VoteResult(None, 0, {}, 0, 0), "single", atype
    if cfg.equivalence is not None and atype in ("code", "text"):
        return vote_equivalence(texts, ranks, cfg.equivalence), "equivalence", atype
    if atype == "code":
        best = min(range(n), key=lambda i: (ranks[i], i))
        return VoteResult(None, best, {}, 0, n), FIRST_SAMPLE, atype
    extractor = extractor_for(cfg, question, texts)
    if extractor is None:
        return VoteResult(None, None, {}, 0, n), "medoid", atype
    answers = counted(extractor, texts, cut)[0]
    res = vote([Ballot(a, rk, i) for i, (a, rk) in enumerate(zip(answers, ranks, strict=True))])
    return res, ("medoid" if res.answer is None else "majority"), atype


def counted(
    extractor: Extractor,
    texts: Sequence[str],
    cut: Sequence[bool] = (),
    rule: CutRule = CUT_RULE,
) -> tuple[list[str | None], int]:
    """Each sample's extracted answer as it counts in the vote (see :func:`weigh_cut`), and how
    many cut samples' answers were dropped."""
    answers = [extractor(t) for t in texts]
    if isinstance(extractor, VoteKey):  # tool calls and JSON: a cut reply fails to parse anyway
        return answers, 0
    return weigh_cut(answers, texts, cut, rule)


def stopping_rule(rule: CutRule = CUT_RULE) -> CutRule:
    """The rule adaptive stopping counts cut samples by: ``fallback`` counts them only while no
    complete sample answers, and a later complete one would discount them all, so stopping
    early on them could change the winner; stopping counts them as ``exclude`` does."""
    return "exclude" if rule == "fallback" else rule


@dataclass(frozen=True)
class Verdict:
    """The outcome of the vote step."""

    method: VoteMethod
    answer_type: str
    winner: int
    """Index of the chosen sample."""
    answer: str | None
    """The extracted answer that won (None if no vote took place)."""
    votes: dict[str, int]
    extracted: list[str | None]
    """Each sample's extracted answer (None unless a majority vote extracted them)."""
    notes: list[str]


async def decide(
    texts: Sequence[str],
    ranks: Sequence[int],
    cfg: SamplingConfig,
    question: str,
    embed: Embed,
    cut: Sequence[bool] = (),
) -> Verdict:
    """Vote over the samples; with nothing to vote on, choose the embedding medoid. Tool calls
    and JSON outputs vote by their canonical keys (:mod:`avengers.answering.toolcalls`). ``cut`` marks
    samples cut off at the token limit (see :data:`CUT_RULE`)."""
    res, method, atype = count(texts, ranks, cfg, question, cut)
    if isinstance(cfg.answer_type, VoteKey):
        return await _decide_keys(
            cfg.answer_type, res, method, texts, ranks, cfg, question, embed, cut
        )
    extractor = extractor_for(cfg, question, texts) if method in ("majority", "medoid") else None
    extracted: list[str | None] = [None] * len(texts)
    dropped = 0
    if extractor is not None:
        answers, dropped = counted(extractor, texts, cut)
        if method == "majority":
            extracted = answers
    winner = res.winner if res.winner is not None else 0
    notes = [f"tie broken by {res.tie_break}"] if res.tie_break else []
    n_cut = sum(bool(c) for c in cut)
    if (note := cut_note(dropped, n_cut, len(texts), extractor is not None)) is not None:
        notes.append(note)
    if method == "medoid":
        if atype != "text":
            notes.append(f"no sample yielded a {atype} answer: the most typical sample was chosen")
        if len(texts) < 2:
            method = "single"
        else:
            winner = medoid(await embed(list(texts)))
            notes.append(
                "no extractable answer to vote on: chose the sample most similar to the others "
                "(embedding medoid)"
            )
    return Verdict(
        method=method,
        answer_type=atype,
        winner=winner,
        answer=res.answer,
        votes=dict(res.counts),
        extracted=extracted,
        notes=notes,
    )


async def _decide_keys(
    key: VoteKey,
    res: VoteResult,
    method: VoteMethod,
    texts: Sequence[str],
    ranks: Sequence[int],
    cfg: SamplingConfig,
    question: str,
    embed: Embed,
    cut: Sequence[bool] = (),
) -> Verdict:
    """The vote over tool calls or JSON outputs: no valid sample means the best-ranked first
    sample; "a text reply" winning means the text samples are voted on again as text."""
    extracted = [key(t) for t in texts]
    notes = [f"tie broken by {res.tie_break}"] if res.tie_break else []
    if method == "single":
        return Verdict(method, key.answer_type, 0, None, {}, extracted, notes)
    if res.answer is None:
        first = min(range(len(texts)), key=lambda i: (ranks[i], i))
        what = "tool call" if key.tools else "JSON output"
        notes.append(f"no sample gave a valid {what}: the best-ranked first sample was returned")
        return Verdict(NO_VALID_SAMPLE, key.answer_type, first, None, {}, extracted, notes)
    winner = res.winner if res.winner is not None else 0
    if res.answer == TEXT_REPLY and key.text_type is not None:
        idx = [i for i, t in enumerate(texts) if not is_tool_ballot(t)]
        sub = await decide(
            [texts[i] for i in idx],
            [ranks[i] for i in idx],
            cfg.updated(answer_type=key.text_type),
            question,
            embed,
            [cut[i] for i in idx] if cut else (),
        )
        for j, i in enumerate(idx):
            extracted[i] = sub.extracted[j]
        notes.append(
            f"{len(idx)} of {len(texts)} samples replied in text rather than calling a tool, "
            f"the most of any answer (votes {dict(res.counts)}): the text replies were voted on"
        )
        return Verdict(
            sub.method,
            sub.answer_type,
            idx[sub.winner],
            sub.answer,
            sub.votes,
            extracted,
            [*notes, *sub.notes],
        )
    return Verdict(method, key.answer_type, winner, res.answer, dict(res.counts), extracted, notes)
