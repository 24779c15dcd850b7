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
    from avengers.embedders import SentenceTransformerEmbedder

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
