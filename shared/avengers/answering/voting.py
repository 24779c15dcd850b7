"""Self-consistency voting: extract a comparable answer from each sample, count, pick the winner.

Rules (all tested):

* A sample whose answer cannot be extracted does not vote. If no sample yields an answer, there
  is no winner by vote (the answering layer then falls back to the medoid or first sample and
  says so) -- an empty extraction never wins.
* The answer with the most votes wins. Ties go to the answer backed by the better-ranked model
  (lower rank number), then to the answer that appeared first.
* Code is not voted on unless an ``equivalence`` check is supplied (two programs that differ in
  text may be the same); without one, the top-ranked model's first sample is returned and the
  account says why.
* Open-ended text with no extractor: the sample most similar to all others (the embedding
  medoid) is chosen, and the account says so.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from ..exceptions import ConfigError

Extractor = Callable[[str], "str | None"]
AnswerType = Literal["auto", "choice", "number", "short", "text", "code"]
ANSWER_TYPES: tuple[str, ...] = ("auto", "choice", "number", "short", "text", "code")

# ------------------------------------------------------------------------------------- extract

_CHOICE_PATTERNS = [
    re.compile(r"\\boxed\{\s*\(?([A-J])\)?\s*\}"),
    re.compile(
        r"(?:answer|option|choice)\s*(?:is|:|=)?\s*(?:option\s*)?[\(\[\*]*\s*([A-J])\b(?![a-z'])",
        re.I,
    ),
    re.compile(r"^\s*\**\(?([A-J])(?:[\).:]|\)?\**\s*$)", re.M),
    re.compile(r"\(([A-J])\)"),
]


def extract_choice(text: str) -> str | None:
    """A multiple-choice letter (A-J): from ``\\boxed{B}``, "the answer is (B)", a line starting
    with "B." / "(B)", or a lone "(B)". The last explicit "answer is" statement wins."""
    if not text:
        return None
    for pat in _CHOICE_PATTERNS:
        found = pat.findall(text)
        if found:
            return found[-1].upper()
    stripped = text.strip().strip("*.()[] ")
    if len(stripped) == 1 and stripped.upper() in "ABCDEFGHIJ":
        return stripped.upper()
    return None


_BOXED = re.compile(r"\\boxed\s*\{")
_NUM = re.compile(
    r"(?<![\w.])[-−]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?%?|(?<![\w.])[-−]?\.\d+"
)
_FRAC = re.compile(r"\\d?frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}")
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*(.{0,80})", re.I | re.S)


def _boxed_contents(text: str) -> list[str]:
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def _canonical_number(token: str) -> str | None:
    t = token.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    pct = t.endswith("%")
    t = t.rstrip("%")
    try:
        if "/" in t:
            num, den = t.split("/")
            value = Fraction(int(num), int(den))
        else:
            value = Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None
    if pct:
        value /= 100
    if value.denominator == 1:
        return str(value.numerator)
    # keep exact fractions exact; terminating decimals print as decimals
    as_float = float(value)
    if Fraction(repr(as_float)) == value:
        return repr(as_float)
    return f"{value.numerator}/{value.denominator}"


def _numbers_in(text: str) -> list[str]:
    text = _FRAC.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
    out = []
    for tok in _NUM.findall(text):
        c = _canonical_number(tok)
        if c is not None:
            out.append(c)
    return out


def extract_number(text: str) -> str | None:
    """A numeric or math answer in canonical form: ``\\boxed{}`` content first, then the number
    after "the answer is", then the last number in the text. Thousands separators, currency,
    units and trailing zeros are dropped; ``\\frac{a}{b}`` and ``a/b`` become exact fractions;
    percentages become fractions of one only when written with ``%``. ``"1,000"``,
    ``"1000.0"`` and ``"\\boxed{1000}"`` all give ``"1000"``."""
    if not text:
        return None
    for box in reversed(_boxed_contents(text)):
        nums = _numbers_in(box)
        if nums:
            return nums[-1]
    said = _ANSWER_IS.findall(text)
    for tail in reversed(said):
        nums = _numbers_in(tail.split("\n")[0])
        if nums:
            return nums[0]
    nums = _numbers_in(text)
    return nums[-1] if nums else None


def states_answer(text: str) -> bool:
    """True if ``text`` states its answer explicitly (``\\boxed{}`` or "the answer is ..."),
    rather than leaving the extractors to fall back on its last number or letter."""
    return bool(text) and bool(_BOXED.search(text) or _ANSWER_IS.search(text))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text: str) -> str | None:
    """A short free-text answer, normalized: the part after "answer is" if present, lower case,
    accents, punctuation and articles removed, whitespace collapsed. Empty gives None."""
    if not text:
        return None
    said = _ANSWER_IS.findall(text)
    if said:
        text = said[-1].split("\n")[0]
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = _ARTICLES.sub(" ", _PUNCT.sub(" ", t))
    t = " ".join(t.split())
    return t or None


_OPTION_LINE = re.compile(r"(?:^|\n|\s)\(?([A-D])[\).:]\s+\S")


def looks_multiple_choice(question: str) -> bool:
    """True if the question lists at least options A and B (``A)``, ``(B)``, ``C.``, ...)."""
    letters = set(_OPTION_LINE.findall(question))
    return {"A", "B"} <= letters


_NUMERIC_QUESTION = re.compile(
    r"\bhow (?:many|much)\b|\bjust the number\b|\bwhich number\b"
    r"|\d+\s*(?:[-+*/×x^]|plus|minus|times|divided by|to the power of)\s*\d+",
    re.I,
)
_CODE_HINT = re.compile(r"```|\bdef \w+\(|\bfunction \w+\(|\bclass \w+[:(]")


def infer_answer_type(question: str, samples: Sequence[str] = ()) -> str:
    """Pick an answer type for ``auto``: choice if the question lists options, code if the samples
    hold code, number if most samples yield a number and either the question asks for one
    ("how many", "what is 4 times 8") or the samples are short or state an answer, short text if
    all samples are short, else open-ended text."""
    if looks_multiple_choice(question):
        return "choice"
    texts = [s for s in samples if s]
    if texts and sum(bool(_CODE_HINT.search(s)) for s in texts) * 2 > len(texts):
        return "code"
    if texts:
        numeric = [s for s in texts if extract_number(s) is not None]
        if _NUMERIC_QUESTION.search(question) and len(numeric) * 2 > len(texts):
            return "number"  # the question asks for a number and most samples give one
        stated = [s for s in texts if _BOXED.search(s) or _ANSWER_IS.search(s) or len(s) < 40]
        if len(numeric) * 2 > len(texts) and len(stated) * 2 > len(texts):
            return "number"
        if all(len(s) <= 80 for s in texts):
            return "short"
    return "text"


def option_letters(question: str) -> set[str]:
    """The option letters a multiple-choice question lists (empty if it lists fewer than two)."""
    letters = set(_OPTION_LINE.findall(question))
    return letters if len(letters) >= 2 else set()


def get_extractor(answer_type: str | Extractor, question: str | None = None) -> Extractor | None:
    """The extractor for an answer type (None for ``text`` and ``code``, which are not voted
    on by extraction). For ``choice`` with the question given, a letter the question does not
    offer (an "E" when the options are A-D) does not count as an answer."""
    if callable(answer_type):
        return answer_type
    if answer_type == "choice" and question:
        allowed = option_letters(question)
        if allowed:

            def restricted(text: str) -> str | None:
                letter = extract_choice(text)
                return letter if letter in allowed else None

            return restricted
    table: dict[str, Extractor | None] = {
        "choice": extract_choice,
        "number": extract_number,
        "short": normalize_text,
        "text": None,
        "code": None,
    }
    if answer_type not in table:
        raise ConfigError(
            f"unknown answer type {answer_type!r}; use one of {', '.join(ANSWER_TYPES)} "
            "or pass a function"
        )
    return table[answer_type]


# ---------------------------------------------------------------------------------------- vote


@dataclass(frozen=True)
class Ballot:
    """One sample's vote: its extracted answer (None: abstains), the rank of the model that
    produced it (0 = router's top choice) and its arrival order."""

    answer: str | None
    model_rank: int = 0
    order: int = 0


@dataclass
class VoteResult:
    """The outcome of a vote. ``winner`` is the index (into the ballots) of a sample carrying the
    winning answer: the earliest one from the best-ranked model that gave it."""

    answer: str | None
    winner: int | None
    counts: dict[str, int] = field(default_factory=dict)
    n_votes: int = 0
    n_abstained: int = 0
    tie_break: str | None = None
    """How a tie was resolved (``model rank`` or ``earliest answer``), if there was one."""

    @property
    def share(self) -> float:
        """Share of valid votes held by the winner (0 with no votes)."""
        return (
            self.counts.get(self.answer, 0) / self.n_votes if self.answer and self.n_votes else 0.0
        )


def vote(ballots: Sequence[Ballot]) -> VoteResult:
    """Majority vote with the documented tie-breaks. Abstentions are counted but never win."""
    counts: dict[str, int] = {}
    best_rank: dict[str, int] = {}
    first: dict[str, int] = {}
    first_index: dict[str, int] = {}
    abstained = 0
    for i, b in enumerate(ballots):
        if b.answer is None or b.answer == "":
            abstained += 1
            continue
        a = b.answer
        counts[a] = counts.get(a, 0) + 1
        if a not in best_rank or b.model_rank < best_rank[a]:
            best_rank[a] = b.model_rank
        if a not in first or (b.model_rank, b.order) < (
            ballots[first_index[a]].model_rank,
            ballots[first_index[a]].order,
        ):
            first_index[a] = i
        first[a] = min(first.get(a, b.order), b.order)
    if not counts:
        return VoteResult(None, None, {}, 0, abstained)
    top = max(counts.values())
    leaders = [a for a, c in counts.items() if c == top]
    tie_break = None
    if len(leaders) > 1:
        best = min(best_rank[a] for a in leaders)
        by_rank = [a for a in leaders if best_rank[a] == best]
        if len(by_rank) < len(leaders):
            tie_break = "model rank"
        if len(by_rank) > 1:
            tie_break = "earliest answer"
        leaders = sorted(by_rank, key=lambda a: first[a])
    winner = leaders[0]
    return VoteResult(
        winner,
        first_index[winner],
        dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        sum(counts.values()),
        abstained,
        tie_break,
    )


def vote_equivalence(
    texts: Sequence[str], ranks: Sequence[int], equivalent: Callable[[str, str], bool]
) -> VoteResult:
    """Vote over samples grouped by a user-supplied equivalence check (e.g. for code: same
    outputs on test inputs). Each group is labelled by its first member's index."""
    labels: list[str | None] = []
    reps: list[int] = []
    for i, t in enumerate(texts):
        if not t:
            labels.append(None)
            continue
        for r in reps:
            if equivalent(texts[r], t):
                labels.append(f"#{r}")
                break
        else:
            reps.append(i)
            labels.append(f"#{i}")
    return vote([Ballot(lab, rk, i) for i, (lab, rk) in enumerate(zip(labels, ranks, strict=True))])


def medoid(vectors: np.ndarray) -> int:
    """Index of the row most similar on average to all others (cosine similarity)."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) == 0:
        raise ValueError("medoid needs a non-empty 2-D array")
    n = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(n == 0, 1.0, n)
    sims = v @ v.T
    return int(np.argmax(sims.sum(axis=1)))


def counts_margin(counts: dict[str, Any], remaining: int) -> bool:
    """True once the leader cannot be overtaken, or tied, by ``remaining`` more votes."""
    if not counts:
        return False
    ordered = sorted(counts.values(), reverse=True)
    lead = ordered[0]
    second = ordered[1] if len(ordered) > 1 else 0
    return bool(lead > second + remaining)
