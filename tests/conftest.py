"""Shared fixtures. Embeddings use the real bundled MiniLM model (offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from toy import toy_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def embedder():
    from avengers.embedding.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def toy_router(embedder):
    from avengers import Router

    return Router.paper(3, embedder=embedder).fit(toy_rows())


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "llmrouter-dcrouter").is_dir():
        pytest.skip(f"research data folder not found at {DATA_DIR}")
    return DATA_DIR


# Per-task scores of the two local models (`avengers local start`) for the docs' examples:
# SmolLM2 is better at arithmetic and multiple choice, Gemma at number comparisons.
LOCAL_SKILL = {
    "smollm2-135m": {"arithmetic": 0.6, "comparison": 0.2, "multiple_choice": 0.5},
    "gemma3-270m": {"arithmetic": 0.3, "comparison": 0.7, "multiple_choice": 0.3},
}
# USD per call at the demo's illustrative prices for ~80 tokens (Gemma is the dearer one).
LOCAL_COST = {"smollm2-135m": 4e-6, "gemma3-270m": 8e-6}


@pytest.fixture(scope="session")
def local_router(embedder):
    """What ``my-router`` is after the README: a router over the two local models, here fitted
    on the shipped demo questions with exact per-task scores (so routing is predictable)."""
    import json

    from avengers import Router
    from avengers.training.bundled import demo_questions_path

    rows = []
    for line in demo_questions_path().read_text().splitlines():
        if line.strip():
            q = json.loads(line)
            scores = {m: skill[q["task"]] for m, skill in LOCAL_SKILL.items()}
            rows.append(
                {"query": q["question"], "task": q["task"], "scores": scores, "costs": LOCAL_COST}
            )
    return Router.paper(3, embedder=embedder).fit(rows)
