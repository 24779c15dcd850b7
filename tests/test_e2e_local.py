"""End to end with two real small models (SmolLM2-135M, Gemma-3-270M GGUF from PyPI packages)
served by llama-cpp-python on 127.0.0.1. Slow; CI runs them."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from avengers import Answerer, Router, load_outcomes
from avengers.demo.local import LlamaCppServer, demo_endpoints, demo_servers
from avengers.training.bundled import demo_questions_path
from avengers.training.collect import acollect, load_questions
from avengers.transport.backends import OpenAIBackend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LlamaCppServer]]:
    logs = tmp_path_factory.mktemp("llama-logs")
    started = demo_servers(logs)
    try:
        for s in started:
            s.start()
        yield started
    finally:
        for s in started:
            s.stop()


async def test_real_models_answer_and_voting_changes_an_answer(
    servers: list[LlamaCppServer], tmp_path: Path, embedder: object
) -> None:
    eps = demo_endpoints(servers)
    questions = load_questions(demo_questions_path())
    train, test = questions[:30], questions[30:60]
    backend = OpenAIBackend(eps)
    summary = await acollect(train, backend, tmp_path / "train.jsonl", samples=2)
    assert summary.new_samples == 120 and not summary.failures_by_kind
    data = load_outcomes(tmp_path / "train.jsonl", duplicates="mean")
    router = Router(n_clusters=4, embedder=embedder).fit(data)
    answerer = Answerer(router, backend, n_samples=5, adaptive=False)
    changed = []
    used = set()
    for q in test:
        res = await answerer.aanswer(q.question, answer_type=q.answer_type)
        assert res.n_drawn == 5 and res.model in eps
        used.add(res.model)
        first = res.samples[0].answer
        if res.answer is not None and first != res.answer:
            changed.append((q.question, first, res.answer, res.votes))
        if changed and len(used) == 2:
            break
    # self-consistency overrode the first sample at least once on real model output
    assert changed, "voting never changed an answer"
    for _, first, voted, votes in changed:
        assert votes[voted] >= max(votes.values()) and votes.get(first or "", 0) <= votes[voted]
    await backend.aclose()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "avengers.demo",
            "--out",
            str(out),
            "--limit",
            "60",
            "--samples",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    ev = summary["evaluation"]
    assert set(ev["per_model"]) == {"smollm2-135m", "gemma3-270m"}
    assert 0.0 <= ev["accuracy"] <= ev["oracle"] <= 1.0 and ev["n_queries"] == 20
    assert "routed (avengers)" in proc.stdout and "stopped the llama.cpp servers" in proc.stdout
    assert {Path(p).name for p in summary["plots"]} >= {"cluster_heatmap.png", "alpha_curve.png"}
    assert len(summary["answers"]) == 3
    # consensus grading of the same samples (no new calls) tracks the gold grades
    assert summary["consensus_gold_correlation"] is not None
    assert summary["consensus_gold_correlation"] > 0
    eps = (out / "endpoints.yaml").read_text()
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", eps)]
    assert ports and not any(_port_open(p) for p in ports)  # the servers it started are gone


async def test_json_schema_output_through_the_router_with_voting(
    servers: list[LlamaCppServer], embedder: object
) -> None:
    """A real model asked for JSON-schema output (llama-cpp-python enforces it by grammar):
    the voted answer parses and matches the schema; the endpoint without the capability is
    left out of the routing."""
    from dataclasses import replace

    from avengers.answering.toolcalls import matches_schema

    eps = demo_endpoints(servers)
    caps = {"json_schema": True, "json_schema_style": "json_object"}
    eps["smollm2-135m"] = replace(eps["smollm2-135m"], capabilities=caps)
    rows = [
        {"query": q, "scores": {"smollm2-135m": 0.4, "gemma3-270m": 0.6}}
        for q in ("What is 2 plus 3?", "Name a fruit.", "What is the capital of France?")
    ]
    router = Router(n_clusters=1, embedder=embedder).fit(rows)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}}
    answerer = Answerer(router, OpenAIBackend(eps), n_samples=3, adaptive=False, max_tokens=24)
    res = await answerer.aanswer(
        'What is 2 plus 3? Reply with JSON like {"answer": 0}.', response_format=fmt
    )
    assert res.model == "smollm2-135m" and res.excluded == {
        "gemma3-270m": "no JSON-schema output (response_format json_schema)"
    }
    assert res.answer_type == "json" and res.vote_method == "majority" and res.n_drawn == 3
    assert matches_schema(json.loads(res.text), schema)
    assert sum(res.votes.values()) >= 2  # the samples parsed and voted
    await answerer.backend.aclose()  # type: ignore[attr-defined]
