"""From a labeled question set and some endpoints to an outcome table a router can train on.

Every candidate model answers every question ``samples`` times. Each sample is graded with the
voting extractors against the gold answer, or -- with ``consensus=True`` and no gold needed --
by agreement with the majority answer across all models' samples for that question (the
annotation-free skill estimate of "Routing with Generated Data", Niu et al., 2026).

Two files are written:

* ``<out>.samples.jsonl`` -- the append-only log, one line per sample (or failed call), flushed
  as it arrives. It is the source of truth: a rerun skips samples already logged and retries
  failed ones, so Ctrl-C or a crashed endpoint loses nothing.
* ``<out>`` -- the outcome table (long JSONL rows ``query, model, score, cost, task, grading``,
  one per question and model, scores averaged over samples), rebuilt from the log on every run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..answering.voting import ANSWER_TYPES, get_extractor, infer_answer_type
from ..exceptions import ConfigError, DataError
from ..transport.backends import Backend, CallError, Completion


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str | None = None
    answer_type: str = "auto"
    task: str | None = None


def load_questions(path: str | Path, *, need_gold: bool = True) -> list[Question]:
    """Questions from JSONL, JSON (a list) or CSV with fields ``question`` (required), ``answer``
    (the gold answer; required unless ``need_gold`` is False), ``answer_type`` (``number``,
    ``choice``, ``short`` or ``auto``), ``task`` and ``id`` (defaults to the row number)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"question file not found: {p}")
    text = p.read_text(encoding="utf-8")
    rows: list[Any]
    try:
        if p.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        elif p.suffix.lower() == ".json":
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{p}: no questions")
    out: list[Question] = []
    ids: set[str] = set()
    for i, r in enumerate(rows, 1):
        where = f"{p}: row {i}"
        if not isinstance(r, dict):
            raise DataError(f"{where}: expected an object")
        q = r.get("question") or r.get("query")
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{where}: missing field 'question'")
        gold = r.get("answer")
        if gold in ("", None):
            gold = None
            if need_gold:
                raise DataError(
                    f"{where}: missing field 'answer' (the gold answer); use --consensus to "
                    "grade by agreement between models instead"
                )
        atype = str(r.get("answer_type") or "auto")
        if atype not in ANSWER_TYPES or atype in ("text", "code"):
            raise DataError(
                f"{where}: answer_type must be number, choice, short or auto, got {atype!r}"
            )
        qid = str(r.get("id", i))
        if qid in ids:
            raise DataError(f"{where}: duplicated id {qid!r}")
        ids.add(qid)
        out.append(Question(qid, q, None if gold is None else str(gold), atype, r.get("task")))
    return out


def extract(question: Question, text: str) -> str | None:
    atype = question.answer_type
    if atype == "auto":
        atype = infer_answer_type(question.question, [text])
        if atype in ("text", "code"):
            atype = "short"
    ex = get_extractor(atype, question.question)
    return ex(text) if ex else None


def gold_answer(question: Question) -> str | None:
    """The gold answer in the extractor's canonical form ("1,000" -> "1000")."""
    if question.answer is None:
        return None
    return extract(question, question.answer) or question.answer.strip()


def _mean_cost(rows: list[dict[str, Any]]) -> float | None:
    """The mean cost of a cell's samples; None (no cost in the outcome row) when any sample's
    cost is unknown (its endpoint has no prices)."""
    costs = [r.get("cost") for r in rows]
    known = [float(c) for c in costs if c is not None]
    return float(np.mean(known)) if known and len(known) == len(costs) else None


@dataclass
class ModelSummary:
    model: str
    samples: int = 0
    failures: int = 0
    score: float = math.nan
    gold_score: float = math.nan
    latency: float = math.nan
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """Summed cost of the samples (NaN when unknown: endpoints without prices)."""


@dataclass
class CollectSummary:
    questions: int
    models: list[ModelSummary]
    grading: str
    new_samples: int
    skipped: int
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    """Models given up on after consecutive connection failures, with the last error."""
    not_attempted: int = 0
    """Samples never requested because their model was unreachable (they stay to do)."""
    consensus_gold_correlation: float | None = None
    outcome_path: str = ""
    log_path: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        head = f"{'model':24} {'samples':>8} {'failed':>7} {'score':>7} {'latency':>8} {'tokens out':>10} {'cost $':>10}"
        lines = [f"grading: {self.grading}", head]
        for m in self.models:
            lines.append(
                f"{m.model:24} {m.samples:8d} {m.failures:7d} {m.score:7.3f} {m.latency:7.2f}s "
                f"{m.completion_tokens:10d} {m.cost:10.6f}"
            )
        if self.grading == "consensus":
            lines.append(
                "scores are consensus-based: agreement with the majority answer across models"
            )
            if self.consensus_gold_correlation is not None:
                lines.append(
                    "correlation of consensus scores with gold-graded scores (per question and "
                    f"model): {self.consensus_gold_correlation:.3f}"
                )
        lines.append(
            f"{self.new_samples} new samples, {self.skipped} already logged, "
            f"{sum(self.failures_by_kind.values())} failed calls"
            + (f" {self.failures_by_kind}" if self.failures_by_kind else "")
            + f", {self.seconds:.1f}s"
        )
        for name, msg in self.unreachable.items():
            lines.append(f"gave up on {name}: unreachable ({msg})")
        if self.not_attempted:
            lines.append(f"{self.not_attempted} samples not attempted: rerun to collect them")
        return "\n".join(lines)


def log_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".samples.jsonl")


def read_log(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Log lines, skipping a torn last line from a crash (returned as a count)."""
    if not path.is_file():
        return [], 0
    rows, torn = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    return rows, torn


async def acollect(
    questions: Sequence[Question],
    backend: Backend,
    out: str | Path,
    *,
    samples: int = 3,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    consensus: bool = False,
    models: Sequence[str] | None = None,
    on_sample: Callable[[], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    log: str | Path | None = None,
    give_up_after: int = 5,
) -> CollectSummary:
    """Run every model over every question, log each sample, then rebuild the outcome table.

    A model whose endpoint fails ``give_up_after`` calls in a row with a connection error (each
    call already retried by the backend) is given up on: its remaining samples are not requested
    and not logged, so a rerun collects them. This keeps a crashed server from costing one
    timeout per remaining sample.
    """
    if samples < 1:
        raise ConfigError("samples must be >= 1")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = Path(log) if log is not None else log_path_for(out)
    names = list(models) if models is not None else list(backend.models())
    if not names:
        raise ConfigError("no models to collect from")
    t0 = time.perf_counter()
    logged, _ = read_log(log)
    done = {(r["id"], r["model"], r["sample"]) for r in logged if "error" not in r}
    jobs = [
        (q, m, s) for q in questions for m in names for s in range(samples)
        if (q.id, m, s) not in done
    ]  # fmt: skip
    skipped = len(questions) * len(names) * samples - len(jobs)
    if on_plan:
        on_plan(len(jobs), skipped)
    torn_tail = log.is_file() and log.stat().st_size > 0 and not log.read_bytes().endswith(b"\n")
    fh = log.open("a", encoding="utf-8")
    if torn_tail:  # a crash left half a line: end it so new lines stay whole
        fh.write("\n")
    streak = dict.fromkeys(names, 0)
    unreachable: dict[str, str] = {}
    not_attempted = 0

    def leave_to_do() -> None:
        nonlocal not_attempted
        not_attempted += 1
        if on_sample:
            on_sample()

    async def one(q: Question, m: str, s: int) -> None:
        if m in unreachable:
            return leave_to_do()
        msgs = [{"role": "user", "content": q.question}]
        try:
            c: Completion = await backend.complete(
                m, msgs, temperature=temperature, max_tokens=max_tokens
            )
        except CallError as e:
            if m in unreachable:  # gave up while this call was in flight: leave it to do
                return leave_to_do()
            row: dict[str, Any] = {"id": q.id, "model": m, "sample": s, "error": e.kind,
                                   "message": e.message}  # fmt: skip
            streak[m] = streak[m] + 1 if e.kind == "connection" else 0
            if streak[m] >= give_up_after:
                unreachable[m] = e.message
        else:
            streak[m] = 0
            ext = extract(q, c.text)
            gold = gold_answer(q)
            row = {
                "id": q.id, "model": m, "sample": s, "text": c.text, "extracted": ext,
                "gold_score": None if gold is None else float(ext is not None and ext == gold),
                "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                "latency": round(c.latency, 4), "cost": c.cost, "finish_reason": c.finish_reason,
            }  # fmt: skip
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        if on_sample:
            on_sample()

    try:
        await asyncio.gather(*(one(*j) for j in jobs))
    finally:
        fh.close()
    run = RunCounts(len(jobs) - not_attempted, skipped, unreachable, not_attempted, t0)
    return build_outcomes(list(questions), names, log, out, consensus=consensus, run=run)


@dataclass(frozen=True)
class RunCounts:
    """What one collection run did, for its summary."""

    new_samples: int
    skipped: int
    unreachable: dict[str, str]
    not_attempted: int
    started: float
    """``time.perf_counter()`` when the run started."""


def build_outcomes(
    questions: list[Question],
    models: list[str],
    log: Path,
    out: Path,
    *,
    consensus: bool,
    run: RunCounts | None = None,
) -> CollectSummary:
    """Rebuild the outcome table ``out`` from the sample log; the summary counts ``run`` (none:
    a rebuild that sampled nothing)."""
    rows, _ = read_log(log)
    qids = {q.id for q in questions}
    ok = [r for r in rows if "error" not in r and r["id"] in qids and r["model"] in models]
    # the latest failure of a sample that never succeeded counts once
    succeeded = {(r["id"], r["model"], r["sample"]) for r in ok}
    failed: dict[tuple[str, str, int], str] = {}
    for r in rows:
        key = (r["id"], r["model"], r["sample"])
        if "error" in r and key not in succeeded and r["id"] in qids and r["model"] in models:
            failed[key] = r["error"]
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in ok:
        cells.setdefault((r["id"], r["model"]), []).append(r)
    majority: dict[str, str | None] = {}
    if consensus:
        for q in questions:
            counts: dict[str, int] = {}
            for m in models:
                for r in cells.get((q.id, m), []):
                    if r["extracted"]:
                        counts[r["extracted"]] = counts.get(r["extracted"], 0) + 1
            majority[q.id] = max(counts, key=lambda a: counts[a]) if counts else None

    def score(r: dict[str, Any]) -> float:
        if consensus:
            maj = majority.get(r["id"])
            return float(maj is not None and r["extracted"] == maj)
        return float(r["gold_score"] or 0.0)

    table, pairs = [], []
    for q in questions:
        for m in models:
            rs = cells.get((q.id, m))
            if not rs:
                continue
            sc = [score(r) for r in rs]
            table.append({
                "query": q.question, "model": m, "score": float(np.mean(sc)),
                "cost": _mean_cost(rs), "task": q.task,
                "grading": "consensus" if consensus else "gold", "n_samples": len(rs),
                "prompt_tokens": int(sum(r["prompt_tokens"] for r in rs)),
                "completion_tokens": int(sum(r["completion_tokens"] for r in rs)),
                "latency": float(np.mean([r["latency"] for r in rs])),
            })  # fmt: skip
            golds = [r["gold_score"] for r in rs if r["gold_score"] is not None]
            if consensus and len(golds) == len(rs):
                pairs.append((float(np.mean(sc)), float(np.mean(golds))))
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in table:
            f.write(json.dumps(row) + "\n")
    tmp.replace(out)

    summaries = []
    for m in models:
        rs = [r for r in ok if r["model"] == m]
        mrows = [t for t in table if t["model"] == m]
        summaries.append(
            ModelSummary(
                model=m,
                samples=len(rs),
                failures=sum(1 for k in failed if k[1] == m),
                score=float(np.mean([t["score"] for t in mrows])) if mrows else math.nan,
                gold_score=float(np.mean([r["gold_score"] for r in rs]))
                if rs and all(r["gold_score"] is not None for r in rs)
                else math.nan,
                latency=float(np.mean([r["latency"] for r in rs])) if rs else math.nan,
                prompt_tokens=int(sum(r["prompt_tokens"] for r in rs)),
                completion_tokens=int(sum(r["completion_tokens"] for r in rs)),
                cost=float(sum(r["cost"] for r in rs))
                if all(r.get("cost") is not None for r in rs)
                else math.nan,
            )
        )
    corr = None
    if consensus and len(pairs) >= 3:
        a = np.array(pairs)
        if a[:, 0].std() > 0 and a[:, 1].std() > 0:
            corr = float(np.corrcoef(a[:, 0], a[:, 1])[0, 1])
    kinds: dict[str, int] = {}
    for k in failed.values():
        kinds[k] = kinds.get(k, 0) + 1
    return CollectSummary(
        questions=len(questions),
        models=summaries,
        grading="consensus" if consensus else "gold",
        new_samples=run.new_samples if run else 0,
        skipped=run.skipped if run else 0,
        failures_by_kind=kinds,
        unreachable=dict(run.unreachable) if run else {},
        not_attempted=run.not_attempted if run else 0,
        consensus_gold_correlation=corr,
        outcome_path=str(out),
        log_path=str(log),
        seconds=time.perf_counter() - run.started if run else 0.0,
    )
