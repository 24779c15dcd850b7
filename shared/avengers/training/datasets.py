"""Loaders for public router-research outcome tables laid out as in the project's ``shared/data``
folder (see its README). Nothing here downloads anything: pass the folder that holds the files.

* ``llmrouter-dcrouter`` (MIT): 9 models, mixed tasks, binary correctness.
* ``routerdc-7models``: 7 models, one file per task, in-distribution and test-only (OOD) files.
* ``routerdc-routerbench-zs``: 11 models, three tasks, correctness with real per-query USD cost.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from pathlib import Path

import numpy as np

from ..exceptions import DataError
from .data import OutcomeData, load_outcomes

RDC_ID_TASKS = ("arc_challenge", "arc_easy", "cmmlu", "gsm8k", "humaneval", "mmlu")
RDC_OOD_TASKS = ("MATH_prealgebra", "ceval", "javascript", "mbpp")


def data_dir(path: str | Path | None = None) -> Path:
    """The research data folder: ``path``, else ``$AVENGERS_DATA``, else ``../shared/data`` beside
    the current directory or beside this source tree."""
    cands = [Path(path)] if path else []
    if os.environ.get("AVENGERS_DATA"):
        cands.append(Path(os.environ["AVENGERS_DATA"]))
    here = Path(__file__).resolve()
    cands += [Path.cwd().parent / "shared" / "data", here.parents[4] / "shared" / "data"]
    for c in cands:
        if (c / "llmrouter-dcrouter").is_dir():
            return c
    raise DataError(
        "research data folder not found; pass its path or set AVENGERS_DATA "
        f"(looked in: {', '.join(str(c) for c in cands)})"
    )


def dcrouter_models(root: str | Path | None = None) -> dict[str, dict[str, object]]:
    """The ``models.json`` of the dcrouter set: per model size, description and prices."""
    result: dict[str, dict[str, object]] = json.loads(
        (data_dir(root) / "llmrouter-dcrouter" / "models.json").read_text()
    )
    return result


def load_dcrouter(
    split: str, root: str | Path | None = None, *, with_price: bool = True
) -> OutcomeData:
    """The dcrouter train or test split; ``with_price`` adds each model's price (USD per million
    tokens) as a per-query cost, the only cost signal this set has."""
    return load_dcrouter_dir(data_dir(root) / "llmrouter-dcrouter", split, with_price=with_price)


def load_dcrouter_dir(d: Path, split: str, *, with_price: bool = True) -> OutcomeData:
    """The dcrouter ``split`` from a folder holding ``{split}.json`` and ``models.json``."""
    data = load_outcomes(d / f"{split}.json")
    if with_price:
        info = json.loads((d / "models.json").read_text())
        price = np.array([float(info[m]["input_price"]) for m in data.models])
        data.costs = np.where(np.isnan(data.scores), np.nan, price[None, :])
    return data


def load_routerdc(which: str, root: str | Path | None = None) -> OutcomeData:
    """``which`` is ``"train"``, ``"test"`` (in distribution) or ``"ood"`` (test-only tasks), or one
    task file stem such as ``"gsm8k-test"``. Repeated questions are averaged."""
    d = data_dir(root) / "routerdc-7models"
    if which == "train":
        files = [
            d / (f"{t}-train.json" if t == "gsm8k" else f"{t}_train.json") for t in RDC_ID_TASKS
        ]
    elif which == "test":
        files = [d / (f"{t}-test.json" if t == "gsm8k" else f"{t}_test.json") for t in RDC_ID_TASKS]
    elif which == "ood":
        files = [d / f"{t}.json" for t in RDC_OOD_TASKS]
    else:
        files = [d / f"{which}.json"]
    parts = [load_outcomes(f, duplicates="mean", task=_task_name(f.stem)) for f in files]
    return OutcomeData.concat(parts, source=f"routerdc-7models:{which}")


def _task_name(stem: str) -> str:
    for suffix in ("_train", "_test", "-train", "-test"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def load_routerbench(split: str, root: str | Path | None = None) -> OutcomeData:
    """RouterBench (zero-shot) train or test, three tasks, with real per-query USD cost. Empty
    score cells are unknown outcomes (NaN)."""
    d = data_dir(root) / "routerdc-routerbench-zs"
    csv.field_size_limit(1 << 30)
    parts = []
    for task in ("arc_challenge", "mbpp", "winograde"):
        path = d / f"{task}_{split}.csv"
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise DataError(f"{path}: empty")
        models = [c for c in rows[0] if c + "|total_cost" in rows[0]]
        out = []
        for r in rows:
            try:
                parsed = ast.literal_eval(r["prompt"])
                prompt = parsed[0] if isinstance(parsed, list) and parsed else str(parsed)
            except (ValueError, SyntaxError):
                prompt = r["prompt"]
            out.append(
                {
                    "query": prompt,
                    "task": task,
                    "scores": {m: r[m] for m in models},
                    "costs": {m: r[f"{m}|total_cost"] for m in models},
                }
            )
        from .data import outcomes_from_rows

        parts.append(outcomes_from_rows(out, source=str(path), duplicates="mean"))
    return OutcomeData.concat(parts, source=f"routerbench-zs:{split}")
