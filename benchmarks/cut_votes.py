"""Votes over real samples of the two local models: how samples cut off at the token limit
should vote, and what adaptive sampling saves on real answers (docs/benchmarks.md, "Samples cut
off at the token limit" and "Adaptive sampling on real samples").

Input: the sample log of a collection with several samples per question, e.g.

    avengers local start
    avengers collect --questions bundled --endpoints endpoints.yaml --samples 10 --out o.jsonl
    .venv/bin/python benchmarks/cut_votes.py o.jsonl.samples.jsonl

Each logged sample keeps its text and its upstream ``finish_reason`` (``length``: cut off at the
endpoint's ``max_tokens``). For every model and question the samples are voted on, in the order
they were drawn, with the question's answer type, as the Answerer's vote does
(:mod:`avengers.answering.tally`), and the winner is graded against the gold answer.

1. Cut samples: each rule of :data:`avengers.answering.tally.CUT_RULES` -- count them as any other sample,
   exclude them, count them only when no complete sample answers (``fallback``), or only when
   they state their answer (``explicit``).
2. Adaptive sampling under the chosen rule (:data:`avengers.answering.tally.CUT_RULE`): samples are
   replayed one at a time through the sampler's own stopping rule
   (:meth:`avengers.answering.sampler.Sampler.decided`): the full vote, "leader safe", and stopping once
   the first 3 or 2 answers agree.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from avengers.answering.config import SamplingConfig
from avengers.answering.sampler import Sampler
from avengers.answering.tally import CUT_RULE, CUT_RULES, CutRule, is_cut, weigh_cut
from avengers.answering.voting import Ballot, get_extractor, vote
from avengers.training.bundled import demo_questions_path
from avengers.training.collect import Question, gold_answer, load_questions


def load(log: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The answered samples per (model, question id), in the order they were drawn."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if "text" in row:
            cells[row["model"], row["id"]].append(row)
    for rows in cells.values():
        rows.sort(key=lambda r: r["sample"])
    return cells


def voted(q: Question, rows: list[dict[str, Any]], rule: CutRule) -> str | None:
    """The answer the vote over ``rows`` elects under ``rule``."""
    extractor = get_extractor(q.answer_type, q.question)
    assert extractor is not None
    texts = [r["text"] for r in rows]
    cut = [is_cut(r.get("finish_reason")) for r in rows]
    answers, _ = weigh_cut([extractor(t) for t in texts], texts, cut, rule)
    return vote([Ballot(a, 0, i) for i, a in enumerate(answers)]).answer


def replay(q: Question, rows: list[dict[str, Any]], cfg: SamplingConfig) -> tuple[str | None, int]:
    """Draw ``rows`` one at a time until the sampler's stopping rule says the vote is decided:
    the elected answer and the samples drawn."""
    sampler = Sampler(None, [], q.question, cfg)  # type: ignore[arg-type]  # decided() needs no backend
    n = len(rows)
    drawn = n
    for k in range(1, n + 1):
        texts = [r["text"] for r in rows[:k]]
        cut = [is_cut(r.get("finish_reason")) for r in rows[:k]]
        if sampler.decided(texts, n - k, "only", cut):
            drawn = k
            break
    return voted(q, rows[:drawn], CUT_RULE), drawn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path, help="a collect sample log (OUT.samples.jsonl)")
    ap.add_argument("--questions", type=Path, default=demo_questions_path())
    args = ap.parse_args()
    questions = {q.id: q for q in load_questions(args.questions)}
    cells = load(args.log)
    models = sorted({m for m, _ in cells})
    n_samples = max(len(r) for r in cells.values())

    print(f"## Cut samples: which vote answers more questions right ({args.log.name})\n")
    print("| model | questions | samples cut (share) | questions with a cut sample | one sample |"
          + "".join(f" {r} |" for r in CUT_RULES))  # fmt: skip
    print("|---|---|---|---|---|" + "---|" * len(CUT_RULES))
    for m in models:
        mine = {qid: rows for (mm, qid), rows in cells.items() if mm == m and qid in questions}
        total = sum(len(r) for r in mine.values())
        n_cut = sum(is_cut(x.get("finish_reason")) for r in mine.values() for x in r)
        with_cut = sum(any(is_cut(x.get("finish_reason")) for x in r) for r in mine.values())
        gold = {qid: gold_answer(questions[qid]) for qid in mine}
        one = sum(voted(questions[qid], r[:1], "count") == gold[qid] for qid, r in mine.items())
        accs = [
            sum(voted(questions[qid], r, rule) == gold[qid] for qid, r in mine.items()) / len(mine)
            for rule in CUT_RULES
        ]
        print(f"| {m} | {len(mine)} | {n_cut} of {total} ({n_cut / total:.0%}) | {with_cut} | "
              f"{one / len(mine):.3f} |" + "".join(f" {a:.3f} |" for a in accs))  # fmt: skip

    print("\nBy task (questions right of those with a cut sample, per rule):\n")
    print("| model | task | questions with a cut sample |" + "".join(f" {r} |" for r in CUT_RULES))
    print("|---|---|---|" + "---|" * len(CUT_RULES))
    for m in models:
        mine = {qid: rows for (mm, qid), rows in cells.items() if mm == m and qid in questions}
        tasks = sorted({questions[qid].task or "" for qid in mine})
        for task in tasks:
            hit = {
                qid: rows
                for qid, rows in mine.items()
                if questions[qid].task == task and any(is_cut(x.get("finish_reason")) for x in rows)
            }
            if not hit:
                continue
            right = [
                sum(
                    voted(questions[q], r, rule) == gold_answer(questions[q])
                    for q, r in hit.items()
                )
                for rule in CUT_RULES
            ]
            print(f"| {m} | {task} | {len(hit)} |" + "".join(f" {x} |" for x in right))

    print(f"\n## Adaptive sampling on real samples (cut samples: {CUT_RULE})\n")
    print(f"| model | strategy | accuracy | samples drawn (of {n_samples}) | saved |")
    print("|---|---|---|---|---|")
    strategies = [
        (f"vote over {n_samples}", SamplingConfig(n_samples=n_samples, adaptive=False)),
        ("adaptive (leader safe)", SamplingConfig(n_samples=n_samples, adaptive=True)),
        ("stop if first 3 agree", SamplingConfig(n_samples=n_samples, stop_on_agreement=3)),
        ("stop if first 2 agree", SamplingConfig(n_samples=n_samples, stop_on_agreement=2)),
    ]
    for m in models:
        mine = {qid: rows for (mm, qid), rows in cells.items() if mm == m and qid in questions}
        for name, base in strategies:
            right = drawn = 0
            for qid, rows in mine.items():
                q = questions[qid]
                answer, k = replay(q, rows, base.updated(answer_type=q.answer_type))
                right += answer == gold_answer(q)
                drawn += k
            mean = drawn / len(mine)
            print(f"| {m} | {name} | {right / len(mine):.3f} | {mean:.2f} | "
                  f"{1 - mean / n_samples:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
