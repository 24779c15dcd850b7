"""Data and a router shipped inside the package, so a new user can route without training.

The data is the MIT-licensed ``llmrouter-dcrouter`` outcome table (9 open models; see
``avengers/data/dcrouter/ATTRIBUTION.md``); the router was trained on its train split.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from ..router import Router
from .data import OutcomeData

PRETRAINED_NAME = "dcrouter-minilm"
ATTRIBUTION = (
    "data: llmrouter-dcrouter from ulab-uiuc/LLMRouter (MIT license; costs are model prices "
    "in USD per million tokens)"
)


def bundled_data_dir() -> Path:
    return Path(str(files("avengers").joinpath("data", "dcrouter")))


def load_bundled(split: str = "train", *, with_price: bool = True) -> OutcomeData:
    """The bundled dcrouter ``train`` or ``test`` split (model prices as costs)."""
    from .datasets import load_dcrouter_dir

    data = load_dcrouter_dir(bundled_data_dir(), split, with_price=with_price)
    data.source = f"bundled:dcrouter/{split}"
    data.notes.append(ATTRIBUTION)
    return data


def pretrained_path(name: str = PRETRAINED_NAME) -> Path:
    return Path(str(files("avengers").joinpath("pretrained", name)))


def load_pretrained(name: str = PRETRAINED_NAME, **kwargs: Any) -> Router:
    """The router shipped with the package (trained on the bundled dcrouter train split)."""
    return Router.from_pretrained(pretrained_path(name), **kwargs)


def demo_questions_path() -> Path:
    """The small labeled question set shipped for the end-to-end demo (arithmetic, comparisons,
    multiple choice; MIT)."""
    return Path(__file__).resolve().parents[1] / "data" / "questions" / "demo.jsonl"


def resolve_router(spec: Router | str | Path) -> Router:
    """A router from a fitted ``Router``, ``"pretrained"`` (the one shipped with the package), a
    folder it was saved to, or a Hugging Face hub id."""
    if isinstance(spec, Router):
        return spec
    if str(spec) in ("pretrained", PRETRAINED_NAME):
        return load_pretrained()
    return Router.from_pretrained(spec)
