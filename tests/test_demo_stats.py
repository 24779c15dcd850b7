"""The demo's comparison statistics (``avengers.demo.run.cross_validated_comparison``), fast: on
outcome files where the right answer is known, routed accuracy, the best single model's, their
difference and its bootstrap interval come out as computed by hand. (The demo itself, on real
local models, is a slow test.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from avengers.demo.run import cross_validated_comparison

FOODS = ["a whole chicken", "salmon fillets", "pork chops", "a beef roast", "lasagna",
         "sweet potatoes", "banana bread", "meatballs", "stuffed peppers", "a turkey breast"]  # fmt: skip
TASKS = ["reverses a string", "sorts a list of numbers", "counts the vowels in a word",
         "checks whether a number is prime", "merges two dictionaries",
         "flattens a nested list", "finds the largest element of a list",
         "removes duplicates from a list", "computes a factorial", "parses a CSV line"]  # fmt: skip


def questions() -> dict[str, list[str]]:
    """Thirty questions each of arithmetic, cooking and code."""
    return {
        "arithmetic": [f"What is {a} times {b}?" for a in (12, 37, 64) for b in range(41, 51)],
        "cooking": [
            f"{how} {food}?"
            for how in ("How long should I roast", "At what temperature do I bake", "How do I cook")
            for food in FOODS
        ],
        "code": [
            f"{how} {task}."
            for how in (
                "Write a Python function that",
                "Write a JavaScript function that",
                "Show me Python code that",
            )
            for task in TASKS
        ],
    }


def _write(path: Path) -> Path:
    """Model ``good`` answers arithmetic and cooking right and code wrong, ``coder`` the reverse:
    ``good`` is the best single model on any training split, routing sends code to ``coder``."""
    rows = []
    for topic, qs in questions().items():
        for q in qs:
            code = topic == "code"
            rows.append({"query": q, "scores": {"good": float(not code), "coder": float(code)}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVENGERS_CACHE", str(tmp_path / "cache"))


def test_comparison_statistics_by_hand(tmp_path: Path) -> None:
    f = _write(tmp_path / "o.jsonl")
    out = cross_validated_comparison([f], 3, repeats=2, folds=3, seed=1)
    ci = out.pop("ci95")
    # every question answered right when routed; the best single model (good) gets 2 in 3
    assert out == {
        "n_questions": 90,
        "repeats": 2,
        "folds": 3,
        "routed": 1.0,
        "best_single": 0.667,
        "difference": 0.333,
    }
    # the gain per question is 1 (code) or 0: the bootstrap interval of its mean is about the
    # normal one, 1/3 +- 1.96 * sqrt(2/9 / 90)
    half = 1.96 * math.sqrt(2 / 9 / 90)
    low, high = ci
    assert low < 1 / 3 < high
    assert low == pytest.approx(1 / 3 - half, abs=0.03)
    assert high == pytest.approx(1 / 3 + half, abs=0.03)
    # the same seed gives the same folds and resamples; another seed the same means
    assert cross_validated_comparison([f], 3, repeats=2, folds=3, seed=1) == {**out, "ci95": ci}
    other = cross_validated_comparison([f], 3, repeats=1, folds=3, seed=5)
    assert (other["routed"], other["best_single"], other["repeats"], other["folds"]) == (
        1.0,
        0.667,
        1,
        3,
    )


def test_comparison_stacks_several_files(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl")
    b = tmp_path / "b.jsonl"
    b.write_text(a.read_text().replace('?"', ' Answer briefly?"').replace('."', ' Be brief."'))
    out = cross_validated_comparison([a, b], 3, repeats=1, folds=4, seed=0)
    assert out["n_questions"] == 180
    assert (out["routed"], out["best_single"], out["difference"]) == (1.0, 0.667, 0.333)
