"""``avengers collect``: run candidate models over a labeled question set into outcome data."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, friendly


@friendly
def collect(
    questions: Annotated[
        Path,
        typer.Option(
            "--questions",
            "-q",
            help="Question file (JSONL/JSON/CSV: question, answer, answer_type, task, id), "
            "or 'bundled' for the demo set shipped with the package.",
        ),
    ],
    endpoints: Annotated[
        Path, typer.Option("--endpoints", "-e", help="Endpoint file (YAML/TOML/JSON).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Outcome table to write (JSONL).")],
    samples: Annotated[
        int, typer.Option("--samples", "-n", help="Samples per question and model.")
    ] = 3,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    max_tokens: Annotated[int | None, typer.Option(help="Completion length cap.")] = None,
    consensus: Annotated[
        bool,
        typer.Option(
            "--consensus",
            help="Grade by agreement with the majority answer across models (no gold answers needed).",
        ),
    ] = False,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only these endpoint names.")
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(help="Sample log to append to and resume from (default: OUT.samples.jsonl)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run every model over every question, grade each sample, and write outcome data.

    Resumable: samples already in OUT.samples.jsonl are skipped, failed ones retried."""
    from tqdm.auto import tqdm

    from ..training.bundled import demo_questions_path
    from ..training.collect import CollectSummary, acollect, load_questions
    from ..transport.backends import OpenAIBackend

    if samples < 1:
        fail("--samples must be >= 1")
    qpath = demo_questions_path() if str(questions) == "bundled" else questions
    qs = load_questions(qpath, need_gold=not consensus)
    backend = OpenAIBackend(endpoints)
    names = list(model) if model else list(backend.models())
    unknown = [m for m in names if m not in backend.endpoints]
    if unknown:
        fail(f"--model {unknown[0]!r} is not in {endpoints}")
    bar = tqdm(
        total=len(qs) * len(names) * samples, desc="collecting", unit="sample", disable=as_json
    )

    def plan(todo: int, skipped: int) -> None:
        bar.reset(total=todo)
        if skipped:
            bar.set_postfix_str(f"{skipped} already logged")

    async def run() -> CollectSummary:
        try:
            return await acollect(
                qs, backend, out, samples=samples, temperature=temperature,
                max_tokens=max_tokens, consensus=consensus, models=names, log=log,
                on_sample=lambda: bar.update(1), on_plan=plan,
            )  # fmt: skip
        finally:
            await backend.aclose()

    try:
        summary = asyncio.run(run())
    finally:
        bar.close()
    failed = sum(summary.failures_by_kind.values())
    if summary.new_samples and failed >= summary.new_samples:
        urls = ", ".join(sorted({backend.endpoints[m].base_url for m in names}))
        gave_up = (
            f" (gave up on {', '.join(summary.unreachable)} after repeated connection failures)"
            if summary.unreachable
            else ""
        )
        fail(
            f"all {failed} calls failed ({', '.join(summary.failures_by_kind)}){gave_up}; are the "
            f"servers running at {urls}? Nothing was lost: rerun to retry."
        )
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        typer.echo(summary.table())
        typer.echo(f"outcomes: {out}   sample log: {summary.log_path}")
    if summary.unreachable:
        fail(
            f"gave up on {', '.join(summary.unreachable)} (unreachable); "
            f"{summary.not_attempted} samples were not attempted. What was collected is saved; "
            "rerun the same command to collect the rest.",
            code=3,
        )
